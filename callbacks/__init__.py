"""The application's Lightning callbacks (train.py, analyze.py); the library `lit_rcqa` never imports them.

`ig_callbacks` is what analyze.py hands to `lit_rcqa.attribution.run.run_ig`: the callbacks of the IG
prediction loop (an `IGCallbacks` factory).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

from callbacks.ig_writer import IGShardWriter
from callbacks.progress import ExampleProgress
from lit_rcqa.process import HeapTrim


def ig_callbacks(out_dir: Path, settings: dict[str, Any], total: int, progress: bool) -> list[Callback]:
    """The IG prediction loop's callbacks: the shard writer, the heap trim between batches, and (with
    `progress`) a bar counted in examples (`total` of them)."""
    return [IGShardWriter(out_dir, settings), HeapTrim()] + ([ExampleProgress(total)] if progress else [])
