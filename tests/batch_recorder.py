"""A test-only callback that records which training features each step consumed (one JSON line per batch).

Passed to train.py as `--trainer.callbacks '[{"class_path": "tests.batch_recorder.RecordBatches", ...}]'`.
With `hold_at_step`, the batch that would be step N waits (before it is trained on) while the file `hold`
exists: a test can then signal the process at a known step. Waiting draws no random numbers and changes
no result.
"""

from __future__ import annotations

import json
import os
import time
from typing import Optional

from lightning.pytorch import Callback


class RecordBatches(Callback):
    def __init__(self, path: str, hold_at_step: Optional[int] = None, hold: Optional[str] = None):
        self.path, self.hold_at_step, self.hold = path, hold_at_step, hold

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        record = {"epoch": trainer.current_epoch, "step": trainer.global_step,
                  "features": batch["feature_index"].tolist()}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.hold and trainer.global_step == self.hold_at_step:
            while os.path.exists(self.hold):
                time.sleep(0.05)


def read_records(path) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.endswith("\n")]  # a line being written is not yet read
