"""What a training curve needs besides the loss: the learning rate at every step, and the throughput.

Both only log (through the trainer's loggers); neither changes training.
"""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor
from typing_extensions import override


class EveryStepLearningRateMonitor(LearningRateMonitor):
    """Lightning's `LearningRateMonitor`, logged at every optimizer step rather than every `log_every_n_steps`:
    the warm-up of a short run lasts fewer steps than one logging interval, and its curve was one point."""

    def __init__(self) -> None:
        super().__init__(logging_interval="step")
        self._logged_step = -1

    @override
    def on_train_batch_start(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        step = trainer.global_step
        if step == self._logged_step or not trainer.loggers:  # gradient accumulation: once per optimizer step
            return
        self._logged_step = step
        stats = self._extract_stats(trainer, "any")
        for logger in trainer.loggers:
            logger.log_metrics(stats, step=step)


class Throughput(Callback):
    """`train/windows_per_s` and `train/tokens_per_s` over each logging interval, and their means over the
    whole fit in `train/throughput` (for the run summary).

    A window is one training row: a question with one window of its passage (most SQuAD questions need one).
    Tokens are real tokens (attention mask), not padding. Time is wall time between batch ends, data
    loading included: what the run really achieved.
    """

    def __init__(self) -> None:
        self.windows = self.tokens = 0          # since the last log
        self.total_windows = self.total_tokens = 0
        self.seconds = self.total_seconds = 0.0
        self._last: float | None = None

    @override
    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._last = time.perf_counter()  # the pause between epochs (validation) is not training time

    @override
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        now = time.perf_counter()
        elapsed, self._last = now - (self._last or now), now
        windows = int(batch["input_ids"].shape[0])
        mask = batch.get("attention_mask")
        tokens = int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())
        self.windows, self.tokens, self.seconds = self.windows + windows, self.tokens + tokens, self.seconds + elapsed
        self.total_windows += windows
        self.total_tokens += tokens
        self.total_seconds += elapsed
        if trainer.global_step % max(trainer.log_every_n_steps, 1) == 0 and self.seconds > 0:
            for logger in trainer.loggers:
                logger.log_metrics({"train/windows_per_s": self.windows / self.seconds,
                                    "train/tokens_per_s": self.tokens / self.seconds}, step=trainer.global_step)
            self.windows = self.tokens = 0
            self.seconds = 0.0

    def summary(self) -> dict[str, float]:
        if self.total_seconds <= 0:
            return {}
        return {"train/windows_per_s": self.total_windows / self.total_seconds,
                "train/tokens_per_s": self.total_tokens / self.total_seconds}
