"""`IGShardWriter`: streams the prediction loop's attribution records to disk, one shard per (rank, batch).

Only writes, through `lit_rcqa.attribution.store.write_shard`, which owns the format (safetensors plus a
JSON sidecar, committed atomically and never over an existing file). Nothing is kept after a batch.

    trainer = Trainer(inference_mode=False, callbacks=[IGShardWriter(out_dir, store.settings_of(manifest))])
    trainer.predict(AttributionSystem(...), dataloader, return_predictions=False)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import BasePredictionWriter
from typing_extensions import override

from lit_rcqa.attribution import store
from lit_rcqa.attribution.record import AttributionRecord


class IGShardWriter(BasePredictionWriter):
    """Writes `<out>/scores/<first position>-r<rank>.{safetensors,hidden.safetensors,json}` per batch.

    `settings` (`store.settings_of(manifest)`) go into every sidecar: what the numbers were computed with.
    """

    def __init__(self, out_dir: str | Path, settings: dict[str, Any]):
        super().__init__(write_interval="batch")
        self.out_dir, self.settings = Path(out_dir), settings

    @override
    def write_on_batch_end(self, trainer, pl_module, prediction: list[AttributionRecord], batch_indices, batch,
                           batch_idx: int, dataloader_idx: int = 0) -> None:
        store.write_shard(self.out_dir, prediction, rank=trainer.global_rank, settings=self.settings,
                          batch_idx=batch_idx)
