"""Read an offline W&B run file (`<run>/wandb/offline-run-*/run-*.wandb`) into what the tests look at.

The records come from `lit_rcqa.offline_run` (the format is described there).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lit_rcqa import offline_run
from lit_rcqa.offline_run import read_records


def run_file(run_dir: Path) -> Path:
    """The one `.wandb` file of the one offline run under `run_dir` (a folder holding `wandb/`)."""
    (offline,) = sorted(Path(run_dir).glob("wandb/offline-run-*"))
    return offline_run.run_file(offline)


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


def wandb_values(run_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(history rows, final summary) of the one offline W&B run under `run_dir`, values parsed from JSON."""
    found = RunFile(run_file(run_dir))
    return found.history, found.summary
