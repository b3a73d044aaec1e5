"""Process-level helpers shared by the entry points (train.py, analyze.py): signal handlers."""

from __future__ import annotations

import contextlib
import signal
from typing import Callable, Iterable, Iterator


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
