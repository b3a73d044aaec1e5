"""Reading a W&B offline run file (`<run>/wandb/offline-run-*/run-*.wandb`) in tests: the logged values."""

from __future__ import annotations

import json
import struct
from pathlib import Path


def read_wandb_records(path: Path) -> list:
    """Every record of a W&B `.wandb` file, decoded with W&B's own protobuf schema.

    The file is a 7-byte header (":W&B", 0xBEE1, version) and then a LevelDB-style log: 32 KiB blocks of
    chunks, each with a 7-byte header (crc32, length, type: 1 whole, 2 first, 3 middle, 4 last part).
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    block, pos, parts, records = 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # too little room left for a header: the block is padded
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            records.append(chunk)
        elif kind == 2:
            parts = chunk
        elif kind == 3:
            parts += chunk
        elif kind == 4:
            records.append(parts + chunk)
    decoded = []
    for raw in records:
        record = pb.Record()
        record.ParseFromString(raw)
        decoded.append(record)
    return decoded


def wandb_values(run_dir: Path) -> tuple[list[dict], dict]:
    """(history rows, final summary) of the one offline W&B run under `run_dir`, values parsed from JSON."""
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    (file,) = offline.glob("*.wandb")
    history, summary = [], {}
    for record in read_wandb_records(file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            summary.update({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in record.summary.update})
    return history, summary
