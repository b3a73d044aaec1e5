"""`ExampleProgress`: a progress bar for the IG prediction loop counted in examples (ex/s), rank 0 only.

Lightning's own bar counts batches; here a batch is a list of examples, so the bar advances by its length.
Use with `Trainer(enable_progress_bar=False)`.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import Callback
from tqdm.auto import tqdm
from typing_extensions import override


class ExampleProgress(Callback):
    def __init__(self, total: int, desc: str = "integrated gradients"):
        self.total, self.desc, self.bar = total, desc, None

    @override
    def on_predict_start(self, trainer, pl_module) -> None:
        # Examples are spread evenly over ranks; rank 0's bar shows the whole run's rate scaled by world size.
        if trainer.is_global_zero:
            self.bar = tqdm(total=self.total, desc=self.desc, unit="ex", dynamic_ncols=True)

    @override
    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.bar is not None:
            self.bar.update(len(batch) * trainer.world_size)

    @override
    def on_predict_end(self, trainer, pl_module) -> None:
        self._close()

    @override
    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._close()  # interrupted: end the bar's line, so what is printed next starts on its own

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
