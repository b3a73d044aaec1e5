"""Read an offline W&B run file (`<run>/wandb/offline-run-*/run-*.wandb`) into its protobuf records.

wandb 0.31 writes it but ships no Python reader. The format is LevelDB's log: a 7-byte file header
(":W&B", magic 0xBEE1 little-endian, version 0), then 32 KiB blocks of chunks, each chunk a 7-byte header
(CRC-32C, uint16 length, type: 1 full, 2 first, 3 middle, 4 last) and its payload; fewer than 7 bytes
left in a block are zero padding. A record's payload, joined over its chunks, is a `wandb.proto`
`Record` message. The CRC is not checked: a test reading a damaged file fails on the protobuf anyway.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Iterator

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def payloads(data: bytes) -> Iterator[bytes]:
    ident, magic, version = struct.unpack("<4sHB", data[:HEADER])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), (ident, magic, version)
    pos, parts = HEADER, []
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # the block's zero padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if kind == 0 and length == 0:  # preallocated, never written
            break
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
    from wandb.proto import wandb_internal_pb2 as pb

    records = []
    for payload in payloads(Path(path).read_bytes()):
        record = pb.Record()
        record.ParseFromString(payload)
        records.append(record)
    return records


def run_file(run_dir: Path) -> Path:
    """The one `.wandb` file of the one offline run under `run_dir` (a folder holding `wandb/`)."""
    (offline,) = sorted(Path(run_dir).glob("wandb/offline-run-*"))
    (path,) = offline.glob("*.wandb")
    return path


def _value(item) -> Any:
    return json.loads(item.value_json)


class RunFile:
    """The parts of a run file the tests look at, decoded to plain Python."""

    def __init__(self, path: Path):
        self.records = read_records(path)
        kinds = [r.WhichOneof("record_type") for r in self.records]
        self.runs = [r.run for r, k in zip(self.records, kinds) if k == "run"]
        self.artifacts = [r.artifact for r, k in zip(self.records, kinds) if k == "artifact"]
        self.use_artifacts = [r.use_artifact for r, k in zip(self.records, kinds) if k == "use_artifact"]
        self.history: list[dict[str, Any]] = []
        for r, k in zip(self.records, kinds):
            if k == "history":
                self.history.append({(i.key or "/".join(i.nested_key)): _value(i) for i in r.history.item})
        self.summary: dict[str, Any] = {}
        self.config: dict[str, Any] = {}
        for r, k in zip(self.records, kinds):
            if k == "summary":
                for i in r.summary.update:
                    self.summary[i.key or "/".join(i.nested_key)] = _value(i)
            elif k == "config":
                for i in r.config.update:
                    self.config[i.key or "/".join(i.nested_key)] = _value(i)
        for run in self.runs:  # the config given to wandb.init travels in the run record
            for i in run.config.update:
                self.config.setdefault(i.key or "/".join(i.nested_key), _value(i))

    def artifact(self, type_: str):
        found = [a for a in self.artifacts if a.type == type_]
        assert len(found) == 1, [(a.type, a.name) for a in self.artifacts]
        return found[0]

    def rows_with(self, key: str) -> list[dict[str, Any]]:
        """History rows that log `key`; a media value (image, table, page) comes as `key/path`, `key/_type`…"""
        return [h for h in self.history if key in h or any(k.startswith(key + "/") for k in h)]


def media(row: dict[str, Any], key: str) -> dict[str, Any]:
    """A media value of a history row put back together: {"_type": …, "path": "media/…", …}."""
    return {k[len(key) + 1:]: v for k, v in row.items() if k.startswith(key + "/")}


def artifact_paths(artifact) -> list[str]:
    return sorted(e.path for e in artifact.manifest.contents)


def artifact_metadata(artifact) -> dict[str, Any]:
    return json.loads(artifact.metadata) if artifact.metadata else {}
