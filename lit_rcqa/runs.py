"""Run directories: `runs/<name>/` with a `run.json` status marker.

A run is `running` while it works, `complete` once every output is written, `failed` otherwise.
Later commands (analyze.py, resume) trust only `complete` runs, so a killed or failed run is never
mistaken for a finished one.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Optional

from lit_rcqa.errors import UserError

STATUS_FILE = "run.json"
_NAME_ENV = "LIT_RCQA_RUN_NAME"  # DDP children re-run the script: they must reuse the parent's name


def run_name(requested: Optional[str], stem: str) -> str:
    """The requested name, else the parent process's (DDP), else a new timestamped one."""
    if requested:
        return requested
    if os.environ.get(_NAME_ENV):
        return os.environ[_NAME_ENV]
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{stem}"
    os.environ[_NAME_ENV] = name  # inherited by DDP children launched later
    return name


def forget_run_name() -> None:
    os.environ.pop(_NAME_ENV, None)


def write_json_atomic(path: Path, value: Any) -> None:
    """Write JSON so a reader never sees half a file: temp file in the same folder, then rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1, ensure_ascii=False)
    os.replace(tmp, path)


def read_status(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(run_dir) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}


_open_runs: list[Path] = []  # runs this process opened and has not finished


def open_run(root: str, name: str, *, kind: str, resume: bool) -> Path:
    """Create (or, to resume, reopen) the run directory and mark it running."""
    run_dir = Path(root) / name
    status = read_status(run_dir)
    if status.get("status") == "complete" and not resume:
        raise UserError(f"run directory {run_dir} already holds a complete run: choose another --run.name")
    run_dir.mkdir(parents=True, exist_ok=True)
    if _is_rank_zero():  # one writer of run.json, even under DDP
        set_status(run_dir, "running", kind=kind, started=time.strftime("%Y-%m-%dT%H:%M:%S"))
        _open_runs.append(run_dir)
    return run_dir


def _is_rank_zero() -> bool:
    # Lightning sets these in the processes it launches; the launching process is rank 0.
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def close_runs(status: str) -> None:
    """Mark every run this process opened and left running (e.g. after an error) with `status`."""
    while _open_runs:
        run_dir = _open_runs.pop()
        if read_status(run_dir).get("status") == "running":
            set_status(run_dir, status)


def set_status(run_dir: Path, status: str, **extra: Any) -> None:
    record = read_status(run_dir)
    record.update(extra, status=status, updated=time.strftime("%Y-%m-%dT%H:%M:%S"))
    write_json_atomic(Path(run_dir) / STATUS_FILE, record)


def latest_complete_run(root: str = "runs", kind: str = "fit") -> Path:
    """The newest complete run of that kind; a clear error when there is none."""
    runs = []
    for status_path in Path(root).glob(f"*/{STATUS_FILE}"):
        status = read_status(status_path.parent)
        if status.get("status") == "complete" and status.get("kind") == kind:
            runs.append((status.get("updated", ""), status_path.parent))
    if not runs:
        raise UserError(f"no complete training run in {root}/: run `python train.py` first, or pass --run DIR")
    return max(runs)[1]
