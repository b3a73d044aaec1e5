"""An offline W&B run file (`<dir>/wandb/offline-run-*/run-<id>.wandb`): its records, and whether it is complete.

wandb 0.31 writes the file from its service process but ships no Python reader for it. The format is LevelDB's
log: a 7-byte file header (":W&B", magic 0xBEE1 little-endian, version 0), then 32 KiB blocks of chunks, each
chunk a 7-byte header (CRC-32C, uint16 length, type: 1 full, 2 first, 3 middle, 4 last) and its payload; fewer
than 7 bytes left in a block are zero padding. A record's payload, joined over its chunks, is a `wandb.proto`
`Record` message. The CRC is not checked (a damaged record fails in the protobuf parser instead).

`wandb.finish()` returns before the service has written the run's last records (measured with wandb 0.31: the
file can still hold only its header); a run is complete on disk once its last record is the `exit` record.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import Iterator

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def payloads(data: bytes) -> Iterator[bytes]:
    """Each record's bytes, in order; a record whose chunks are not all written yet is left out."""
    ident, magic, version = struct.unpack("<4sHB", data[:HEADER])
    if (ident, magic, version) != (b":W&B", 0xBEE1, 0):
        raise ValueError(f"not a W&B run file (header {data[:HEADER]!r})")
    pos, parts = HEADER, []
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # the block's zero padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if kind == 0 and length == 0:  # preallocated, never written
            return
        if pos + HEADER + length > len(data):  # a chunk still being written
            return
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            parts = [chunk]
        elif kind == MIDDLE:
            parts.append(chunk)
        elif kind == LAST:
            yield b"".join(parts + [chunk])
            parts = []


def read_records(path: Path) -> list:
    """Every record of the file, decoded with wandb's own protobuf schema."""
    from wandb.proto import wandb_internal_pb2 as pb

    records = []
    for payload in payloads(Path(path).read_bytes()):
        record = pb.Record()
        record.ParseFromString(payload)
        records.append(record)
    return records


def run_file(sync_dir: Path) -> Path:
    """The one `.wandb` file of an offline run's folder (`<dir>/wandb/offline-run-…`)."""
    (path,) = Path(sync_dir).glob("*.wandb")
    return path


def is_complete(path: Path) -> bool:
    """Whether the run's last record, `exit`, is on disk."""
    from wandb.proto import wandb_internal_pb2 as pb

    try:
        last = None
        for last in payloads(Path(path).read_bytes()):
            pass
    except (OSError, ValueError, struct.error):
        return False
    if last is None:
        return False
    record = pb.Record()
    record.ParseFromString(last)
    return record.WhichOneof("record_type") == "exit"


def wait_complete(sync_dir: Path, timeout: float = 60.0, poll: float = 0.02) -> bool:
    """Wait until the offline run in `sync_dir` is complete on disk; False if it is not after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            path = run_file(sync_dir)
        except ValueError:  # no file (yet), or more than one
            path = None
        if path is not None and is_complete(path):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
