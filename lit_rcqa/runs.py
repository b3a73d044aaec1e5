"""Run directories: `runs/<name>/` with a `run.json` status marker.

A run is `running` while it works, `complete` once every output is written, `interrupted` after a stop
signal, `failed` otherwise. Later commands (analyze.py, resume) trust only `complete` runs, so a killed or
failed run is never mistaken for a finished one.

One process at a time works in a run folder: the launcher holds an exclusive `flock` on `<run>/.lock`,
which names its pid. The kernel drops the lock when the process dies, however it dies, so a lock that
still names a pid but is free was left by a dead process: it is taken over with a one-line notice.
DDP children (LOCAL_RANK > 0) join their launcher's run without taking the lock.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

from lit_rcqa.errors import UserError
from lit_rcqa.process import is_launcher, write_json_atomic

STATUS_FILE = "run.json"
LOCK_FILE = ".lock"
# A run name is one folder under the runs root: no separators, no "..", nothing a shell or a tracker mangles.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
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


def read_status(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(run_dir) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def check_run_name(name: str) -> None:
    """A run name must be a plain folder name, so that a run never writes outside `--run.root`."""
    if not _PLAIN_NAME.fullmatch(name or ""):
        raise UserError(f"--run.name {name!r}: use a plain folder name (letters, digits, '_', '-', '.'; at most 128, "
                        "no '/' or '..'); choose where runs go with --run.root")


def _stderr_line(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


_open_runs: list[Path] = []  # runs this process opened and has not finished
_held_locks: dict[Path, int] = {}  # run directory -> file descriptor holding its lock


def open_run(root: str, name: str, *, kind: str, resume: bool,
             notify: Callable[[str], None] = _stderr_line) -> Path:
    """Create (or, to resume, reopen) the run directory, lock it and mark it running.

    Refused (UserError) when another live process works in it, or when it holds a complete run and this is
    not a resume. `notify` gets the one-line notice when a dead process's lock is taken over.
    """
    check_run_name(name)
    run_dir = Path(root) / name
    status = read_status(run_dir)
    if status.get("status") == "complete" and not resume:
        raise UserError(f"run directory {run_dir} already holds a complete run: choose another --run.name")
    run_dir.mkdir(parents=True, exist_ok=True)
    if is_launcher():  # the launcher locks and writes run.json; its DDP children only join
        stale_pid = _lock(run_dir)
        if stale_pid is not None:
            notify(f"taking over {run_dir}: its lock names process {stale_pid}, which is no longer running")
        set_status(run_dir, "running", kind=kind, started=time.strftime("%Y-%m-%dT%H:%M:%S"), pid=os.getpid())
        _open_runs.append(run_dir)
    return run_dir


def _lock(run_dir: Path) -> Optional[int]:
    """Hold `<run>/.lock` for the life of this process; the pid of a dead holder it replaces, if any."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking (documented; train.py targets Linux)
        return None
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_pid(fd)
        os.close(fd)
        who = f"process {holder}" if holder else "another process"
        raise UserError(f"run directory {run_dir} is in use by {who}: wait for it to end, stop it, "
                        "or choose another --run.name") from None
    stale = _read_pid(fd)  # a pid left in a free lock: its holder died before releasing it
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held_locks[run_dir] = fd
    return stale


def _read_pid(fd: int) -> Optional[int]:
    text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def _unlock(run_dir: Path) -> None:
    """Empty the lock file, then release it. The file itself stays: deleting a lock file others may have
    opened would let two processes hold 'the' lock on two different files."""
    fd = _held_locks.pop(run_dir, None)
    if fd is None:
        return
    try:
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing releases the flock


def close_runs(status: str) -> None:
    """Mark every run this process opened and left running (e.g. after an error) with `status`."""
    while _open_runs:
        run_dir = _open_runs.pop()
        if read_status(run_dir).get("status") == "running":
            set_status(run_dir, status)
        _unlock(run_dir)


def release(run_dir: Path) -> None:
    """Release the lock of a run this process finished (its status is already written)."""
    if run_dir in _open_runs:
        _open_runs.remove(run_dir)
    _unlock(run_dir)


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
