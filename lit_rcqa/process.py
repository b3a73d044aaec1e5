"""Process-level concerns of the entry points (train.py, analyze.py), in one place.

- which process launched the run (DDP children re-run the script): `is_launcher`;
- stop signals: `signal_handlers`, and `stop_on_signals` for a loop Lightning does not stop on SIGTERM;
- memory: `HeapTrim` (a Lightning callback), `trimmed`, `release_freed_memory`, `read_all_weights`;
- files: `write_bytes_atomic` (and its text/JSON forms), whose temp names (`temp_path`) say who wrote them,
  so that a later run removes a killed writer's leftovers only (`writer_is_gone`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from lit_rcqa.errors import UserError


# --- the launcher ----------------------------------------------------------------------------------
def is_launcher() -> bool:
    """True in the process that starts the run; Lightning sets these in the DDP processes it launches."""
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


# --- stop signals ----------------------------------------------------------------------------------
@contextlib.contextmanager
def signal_handlers(signums: Iterable[int], handler: Callable) -> Iterator[None]:
    """`handler` for each of `signums` while inside; the previous handlers are put back on the way out.

    A signal ignored from the start (`nohup`, a background job of a non-interactive shell) stays ignored:
    whoever started us asked for that.
    """
    previous = {signum: signal.signal(signum, handler) for signum in signums
                if signal.getsignal(signum) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived. A BaseException, so that no `except Exception` on the way swallows it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class Stop:
    """The first stop signal received, and whether its one stderr line was written."""

    line: str                       # the stderr line; `{signal}` becomes the signal's name
    signum: Optional[int] = None
    reported: bool = False

    def report(self) -> int:
        """Write the line once (launcher process only); the exit status 128 + signal number."""
        if not self.reported and is_launcher():
            print(self.line.format(signal=signal.Signals(self.signum).name), file=sys.stderr, flush=True)
        self.reported = True
        return 128 + self.signum


@contextlib.contextmanager
def stop_on_signals(line: str, signums=(signal.SIGTERM, signal.SIGINT)) -> Iterator[Stop]:
    """While inside, SIGTERM and SIGINT raise `Interrupted` in the main thread; a second one exits at once.

    Why this is needed: while `Trainer.predict` runs, Lightning replaces the SIGTERM handler with one that only
    sets `trainer.received_sigterm`, which its fit and validation loops read but the prediction loop does
    not: a SIGTERM during IG was ignored until every example was done. Lightning still calls the handler it
    found installed (this one) after its own, and its teardown puts this one back.
    """
    stop = Stop(line)
    if threading.current_thread() is not threading.main_thread():  # handlers can only be set there
        yield stop
        return

    def handler(signum, frame):
        if stop.signum is not None:  # the cleanup after the first signal takes too long: leave now
            os._exit(stop.report())  # every file written atomically is whole either way
        stop.signum = signum
        raise Interrupted(signum)

    with signal_handlers(signums, handler):  # a signal ignored from the start stays ignored
        yield stop


# --- memory ----------------------------------------------------------------------------------------
def _glibc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018  (glibc only)
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _glibc()


def release_freed_memory(*_) -> None:
    """Hand the C heap's free pages back to the system (glibc's `malloc_trim`; elsewhere nothing).

    Tensors of a few hundred KiB up to 32 MiB come from glibc's heap; with every example a different length
    the heap fragments, and free pages between live blocks stay resident: RSS crept up with the number of
    examples. Trimmed between batches, the heap holds about what one batch needs. The price is faulting that
    memory in again: +15 % CPU time measured on MiniLM at m = 4 when trimming after every example, where an
    example takes about a second; a small share at the default accuracy target (seconds per example).
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _heap_trim_class():
    from lightning.pytorch.callbacks import Callback

    class HeapTrim(Callback):
        """Trims the heap (`release_freed_memory`) after each batch of the prediction loop."""

        def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
            release_freed_memory()

    HeapTrim.__module__, HeapTrim.__qualname__ = __name__, "HeapTrim"
    return HeapTrim


def __getattr__(name: str):
    """`HeapTrim` is built on first use, so that importing this module (atomic writes, signals: also used by
    `python -m lit_rcqa.evaluate` and `lit_rcqa.predict`) does not load Lightning."""
    if name == "HeapTrim":
        cls = _heap_trim_class()
        globals()["HeapTrim"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def trimmed(items: Iterable) -> Iterator:
    """The same items; the heap is trimmed after each one is processed."""
    for item in items:
        yield item
        release_freed_memory()


def read_all_weights(model) -> None:
    """Read every weight once, so the model's footprint is resident from the start.

    `from_pretrained` memory-maps model.safetensors: a page of the word-embedding matrix became resident only
    when an example first used a token id on it, so RSS crept up with the number of examples (by up to the
    whole matrix: 45 MiB for MiniLM, 89 MiB for BERT-base). Reading is enough; nothing is copied.
    """
    import torch

    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            tensor.sum()


# --- files -----------------------------------------------------------------------------------------
TEMP_MARKER = ".lit_rcqa.tmp-"
# `.<name>.lit_rcqa.tmp-<host>-<pid>`; names written before the host was added end in `-<pid>` alone.
_TEMP_OWNER = re.compile(re.escape(TEMP_MARKER) + r"(?:(?P<host>[A-Za-z0-9_.-]+)-)?(?P<pid>\d+)$")


def host() -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "localhost"


def temp_path(path: Path) -> Path:
    """Where `path` is written before it is committed: a name no user file has, naming the writer's host and
    pid, so that a later run removes it only once that process is gone (`writer_is_gone`)."""
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_MARKER}{host()}-{os.getpid()}")


def pid_is_alive(pid: int) -> bool:
    """Whether a process of that id runs on this host (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def writer_is_gone(writer_host: Optional[str], pid: int) -> bool:
    """The writer of a temp file no longer runs: it wrote on this host (or before names said which) and its
    process is gone. Another host's writer can never be told gone from here."""
    return writer_host in (None, host()) and not pid_is_alive(pid)


def temp_writer(name: str) -> Optional[tuple[Optional[str], int]]:
    """(host or None, pid) of a `temp_path` name; None for any other name."""
    m = _TEMP_OWNER.search(name)
    return None if m is None else (m.group("host"), int(m.group("pid")))


def write_bytes_atomic(path: Path, data: bytes, *, replace: bool = True) -> None:
    """Write `data` to `path` so that a reader sees the whole file or none: a temp name in the same folder
    (`temp_path`), flushed to disk, then committed. With `replace=False` an existing file is never replaced:
    a name taken meanwhile (another writer) is one clear error, and whatever holds it stays as it is."""
    path = Path(path)
    tmp = temp_path(path)
    taken = UserError(f"{path} appeared while this process was writing it: is another process writing into "
                      f"{path.parent}? Nothing was replaced; re-run once it has finished")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)  # atomic, and fails if `path` exists (a rename would silently replace it)
        except FileExistsError:  # the name was free a moment ago: another process writes here too
            raise taken from None
        except FileNotFoundError:  # our temp file was removed under us: someone else cleans this folder
            raise UserError(f"{tmp} was removed before it could be committed as {path.name}: is another process "
                            f"cleaning {path.parent}? Nothing was committed; re-run once it has finished") from None
        except OSError:  # a file system without hard links: check, then rename. The two steps are not atomic;
            if path.exists():  # a folder lock (e.g. attribution.run.out_dir_lock) keeps other writers out
                raise taken from None
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, value: Any) -> None:
    write_text_atomic(path, json.dumps(value, indent=1, ensure_ascii=False))
