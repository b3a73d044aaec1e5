"""`IGShardWriter`: streams the prediction loop's IG results to disk, one shard per (rank, batch).

Only writes. The format (documented in `lit_rcqa.attribution.store`, its only reader) is safetensors for
arrays plus a JSON sidecar, never pickle. Each file goes to a temp name in the same folder and is committed
(hard link, or a checked rename where links are not supported) under a name no file holds, never over an
existing one; the sidecar, which names and checksums the tensor files and itself, is committed last, so a
shard is either complete or absent even after `kill -9`, and a committed file is never replaced. Nothing is
kept in memory after a batch is written.

    trainer = Trainer(inference_mode=False, callbacks=[IGShardWriter(out_dir, store.settings_of(manifest))])
    trainer.predict(AttributionSystem(...), dataloader, return_predictions=False)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from lightning.pytorch.callbacks import BasePredictionWriter
from typing_extensions import override

from lit_rcqa.attribution.store import (SCHEMA_VERSION, SCORES_DIR, encode_sidecar, free_shard_name, sha256_bytes,
                                        temp_path)
from lit_rcqa.attribution.system import ExampleResult
from lit_rcqa.errors import UserError


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a temp name, then commit it under `path`, never over an existing file: a name taken meanwhile
    (another writer) is a clear error, and whatever holds that name stays as it is."""
    tmp = temp_path(path)
    taken = UserError(f"{path} appeared while this run was writing it: is another analyze.py writing into "
                      f"{path.parent}? Nothing was replaced; re-run once it has finished")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # atomic, and fails if `path` exists (a rename would silently replace it)
        except FileExistsError:  # the name was free a moment ago: another process writes here too
            raise taken from None
        except FileNotFoundError:  # our temp file was removed under us: someone else cleans this folder
            raise UserError(f"{tmp} was removed before it could be committed as {path.name}: is another process "
                            f"cleaning {path.parent}? Nothing was committed; re-run once it has finished") from None
        except OSError:  # a file system without hard links: check, then rename. The two steps are not atomic;
            if path.exists():  # the folder lock (run.out_dir_lock) is what keeps other writers out meanwhile
                raise taken from None
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _example_meta(r: ExampleResult) -> dict[str, Any]:
    return {"id": r.example_id, "position": r.position, "question": r.question, "context": r.context,
            "tokens": r.tokens, "passage_start": r.passage_start, "passage_end": r.passage_end, "layers": r.layers,
            "pred_start": r.pred_start, "pred_end": r.pred_end, "pred_text": r.pred_text,
            "start_prob": r.start_prob, "end_prob": r.end_prob, "target_value": r.target_value,
            "nbest_probability": r.nbest_probability, "window": r.window, "explained": r.explained,
            "gold_texts": list(r.gold_texts),
            "evidence_span": None if r.evidence_span is None else list(r.evidence_span),
            "hidden": r.hidden is not None}


def encode_shard(results: Sequence[ExampleResult]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-example arrays keyed "k.name" (k = row in the shard), and hidden states keyed "k"."""
    scores, hidden = {}, {}
    for k, r in enumerate(results):
        arrays = {"importance": r.importance.astype(np.float32), "signed": r.signed.astype(np.float32),
                  "delta": r.delta.astype(np.float64), "steps": r.steps.astype(np.int32),
                  "offsets": r.offsets.astype(np.int64).reshape(-1, 2), "input_ids": r.input_ids.astype(np.int64)}
        if r.token_type_ids is not None:
            arrays["token_type_ids"] = r.token_type_ids.astype(np.int64)
        if r.converged is not None:
            arrays["converged"] = r.converged.astype(bool)
        scores.update({f"{k}.{name}": np.ascontiguousarray(a) for name, a in arrays.items()})
        if r.hidden is not None:
            hidden[str(k)] = np.ascontiguousarray(r.hidden)
    return scores, hidden


class IGShardWriter(BasePredictionWriter):
    """Writes `<out>/scores/<first position>-r<rank>.{safetensors,hidden.safetensors,json}` per batch.

    `settings` (`store.settings_of(manifest)`) go into every sidecar: what the numbers were computed with.
    """

    def __init__(self, out_dir: str | Path, settings: dict[str, Any]):
        super().__init__(write_interval="batch")
        self.folder = Path(out_dir) / SCORES_DIR
        self.settings = settings

    @override
    def write_on_batch_end(self, trainer, pl_module, prediction: list[ExampleResult], batch_indices, batch,
                           batch_idx: int, dataloader_idx: int = 0) -> None:
        if not prediction:
            return
        from safetensors.numpy import save as to_safetensors

        self.folder.mkdir(parents=True, exist_ok=True)
        # A name none of whose files exist: tensor files are committed without replacing too, so two writers
        # can never pair one's sidecar with the other's tensors under a shared name.
        name = free_shard_name(self.folder, min(r.position for r in prediction), trainer.global_rank)
        scores, hidden = encode_shard(prediction)
        tensors = {}
        for kind, arrays, suffix in (("scores", scores, ".safetensors"), ("hidden", hidden, ".hidden.safetensors")):
            if not arrays:
                continue
            data = to_safetensors(arrays)
            _write_atomic(self.folder / f"{name}{suffix}", data)
            tensors[kind] = {"file": f"{name}{suffix}", "bytes": len(data), "sha256": sha256_bytes(data)}
        sidecar = {"schema": SCHEMA_VERSION, "rank": trainer.global_rank, "batch_idx": batch_idx,
                   "settings": self.settings, "tensors": tensors, "examples": [_example_meta(r) for r in prediction]}
        _write_atomic(self.folder / f"{name}.json", encode_sidecar(sidecar))
