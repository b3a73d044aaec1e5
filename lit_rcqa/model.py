"""The training system: any `AutoModelForQuestionAnswering` encoder, fine-tuned for extractive QA.

One shared step for all stages. Validation runs the SQuAD post-processing over the examples this
rank scored (the datamodule gives each rank whole examples) and updates our EM/F1 metrics, whose
summed states make the epoch value exact under DDP. The plain HF model is `self.model`; Integrated
Gradients and the analyses talk to it directly, never to this class.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from jsonargparse.typing import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from lightning.pytorch import LightningModule
from torchmetrics import MaxMetric, MeanMetric
from typing_extensions import override

from lit_rcqa.data.features import window_lengths
from lit_rcqa.errors import UserError
from lit_rcqa.evaluation.metrics import SquadMetrics
from lit_rcqa.evaluation.postprocess import DEFAULT_POSTPROCESS, PostprocessSettings, postprocess_predictions
from lit_rcqa.paths import resolve_model_path

_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def load_qa_model(model_name_or_path: str):
    """A QA model from a local folder, the embedded default, or (online) a hub name; one clear error otherwise."""
    from transformers import AutoModelForQuestionAnswering
    from transformers.utils import logging as hf_logging

    path = resolve_model_path(model_name_or_path)
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # the QA head is new when starting from an encoder: expected, not news
    hf_logging.disable_progress_bar()
    try:
        return AutoModelForQuestionAnswering.from_pretrained(path)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"model {model_name_or_path!r}: cannot load ({first})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:  # as they were: train.py turns transformers' own bars off
            hf_logging.enable_progress_bar()


def decoupled_weight_decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: no weight decay on biases and LayerNorm weights (as BERT)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class QAModule(LightningModule):
    """Fine-tunes an extractive QA encoder; logs `train/loss`, `val/loss`, `val/em`, `val/f1`, `val/f1_best`.

    Args:
        model_name_or_path: A local Hugging Face model folder, a hub name (online), or "embedded-minilm"
            (the MiniLM shipped with the package).
        learning_rate: Peak AdamW learning rate (BERT and the paper: 3e-5).
        weight_decay: AdamW weight decay; not applied to biases and LayerNorm weights.
        warmup_ratio: Share of the optimizer steps spent in linear warm-up (then linear decay to 0); below 1.
        adam_epsilon: AdamW epsilon.
        n_best: Post-processing: start and end candidates kept per window, and n-best entries per question.
        max_answer_length: Post-processing: longest answer span, in tokens.
        version_2_with_negative: SQuAD v2: allow the empty (no-answer) prediction and score HasAns/NoAns.
        null_threshold: SQuAD v2: predict no answer when the null score beats the best span's by more than this.
        seed_qa_head: Seed for a freshly initialised QA head, so that runs start from the same weights.
    """

    def __init__(
        self,
        model_name_or_path: str = "embedded-minilm",
        learning_rate: PositiveFloat = 3e-5,
        weight_decay: NonNegativeFloat = 0.01,
        warmup_ratio: NonNegativeFloat = 0.1,
        adam_epsilon: PositiveFloat = 1e-8,
        # Flat here (one key each in config.yaml); the defaults are PostprocessSettings'.
        n_best: PositiveInt = DEFAULT_POSTPROCESS.n_best,
        max_answer_length: PositiveInt = DEFAULT_POSTPROCESS.max_answer_length,
        version_2_with_negative: bool = DEFAULT_POSTPROCESS.version_2,
        null_threshold: float = DEFAULT_POSTPROCESS.null_threshold,
        seed_qa_head: NonNegativeInt = 0,
    ) -> None:
        super().__init__()
        if warmup_ratio >= 1:
            raise UserError(f"model.warmup_ratio must be below 1, got {warmup_ratio}")
        self.save_hyperparameters()
        self.postprocess = PostprocessSettings(n_best=n_best, max_answer_length=max_answer_length,
                                               version_2=version_2_with_negative, null_threshold=null_threshold)
        torch.manual_seed(seed_qa_head)
        self.model = load_qa_model(model_name_or_path).train()  # from_pretrained returns eval mode: dropout off
        self.val_metrics = SquadMetrics(version_2=version_2_with_negative)
        self.val_loss = MeanMetric()
        self.val_f1_best = MaxMetric()
        self.val_f1_best.persistent(True)  # saved in checkpoints: the best over epochs survives a resume
        self._val_outputs: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        # The latest validation result on this rank: predictions, n-best lists and metric values.
        self.last_predictions: dict[str, str] = {}
        self.last_nbest: dict[str, list] = {}
        self.last_metrics: dict[str, float] = {}

    @override
    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = {k: batch[k] for k in _INPUT_KEYS if k in batch}
        out = self.model(**inputs)
        return out.start_logits, out.end_logits  # [batch, pos] each

    def _shared_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        start_logits, end_logits = self(batch)
        # Padding must never be chosen: mask it before the softmax inside the cross-entropy.
        pad = batch["attention_mask"] == 0
        start_logits = start_logits.masked_fill(pad, torch.finfo(start_logits.dtype).min)
        end_logits = end_logits.masked_fill(pad, torch.finfo(end_logits.dtype).min)
        loss = None
        if "start_positions" in batch:
            ce = torch.nn.functional.cross_entropy
            loss = (ce(start_logits.float(), batch["start_positions"]) + ce(end_logits.float(), batch["end_positions"])) / 2
        return loss, start_logits, end_logits

    @override
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _, _ = self._shared_step(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        return loss

    @override
    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, start_logits, end_logits = self._shared_step(batch)
        if loss is not None:
            self.val_loss.update(loss, weight=batch["input_ids"].shape[0])
        lengths = window_lengths(batch["attention_mask"])  # not the mask's sum: left padding comes first
        for i, feature_index in enumerate(batch["feature_index"].tolist()):
            n = lengths[i]
            self._val_outputs.append((feature_index, start_logits[i, :n].float().cpu(), end_logits[i, :n].float().cpu()))

    @override
    def on_validation_epoch_start(self) -> None:
        self._val_outputs = []

    @override
    def on_validation_epoch_end(self) -> None:
        split = self.trainer.datamodule.eval_split()
        predictions, nbest = self._postprocess(split, self._val_outputs)
        self._val_outputs = []
        ids = list(predictions)
        golds = [split.gold_texts[i] for i in ids]  # cached on the split
        self.val_metrics.update([predictions[i] for i in ids], golds)
        metrics = {k: float(v) for k, v in self.val_metrics.compute().items()}  # synced over ranks
        self.val_metrics.reset()
        self.val_f1_best.update(torch.tensor(metrics["f1"]))
        self.log("val/em", metrics["exact_match"], prog_bar=True)
        self.log("val/f1", metrics["f1"], prog_bar=True)
        self.log("val/f1_best", self.val_f1_best.compute())
        if self.val_loss.update_count:
            self.log("val/loss", self.val_loss.compute())
        self.val_loss.reset()
        self.last_predictions, self.last_nbest, self.last_metrics = predictions, nbest, metrics

    def _postprocess(self, split, outputs) -> tuple[dict[str, str], dict[str, list]]:
        """Post-process the features this rank scored; every example's features are all on one rank."""
        outputs = sorted(outputs, key=lambda o: o[0])
        examples, features = split.select([o[0] for o in outputs])
        return postprocess_predictions(examples, features, [o[1].numpy() for o in outputs],
                                       [o[2].numpy() for o in outputs], **dataclasses.asdict(self.postprocess))

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lightning does not save the random-number state; without it a resumed run draws other dropout masks.
        checkpoint["rng_states"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            checkpoint["rng_states"]["cuda"] = torch.cuda.get_rng_state_all()

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for name, value in self.val_f1_best.metric_state.items():  # checkpoints from before it was saved
            state.setdefault(f"val_f1_best.{name}", value)
        rng = checkpoint.get("rng_states")
        # One process only: the state is rank 0's, and handing it to every DDP rank would give all ranks the
        # same dropout masks. A DDP resume continues with fresh random numbers instead (not bitwise).
        if rng is not None and torch.distributed.is_available() and torch.distributed.is_initialized() \
                and torch.distributed.get_world_size() > 1:
            return
        if rng is not None:
            torch.set_rng_state(rng["torch"])
            if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(rng["cuda"])

    @override
    def configure_optimizers(self):
        from transformers import get_linear_schedule_with_warmup

        hp = self.hparams
        groups = decoupled_weight_decay_groups(self.model, hp.weight_decay)
        # The fused kernel (as the HF Trainer's default "adamw_torch_fused"): on a CPU the per-parameter loop
        # costs ~146 ms per step for MiniLM, the fused one ~26 ms.
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point
                    for group in groups for p in group["params"])
        optimizer = torch.optim.AdamW(groups, lr=hp.learning_rate, eps=hp.adam_epsilon, fused=fused or None)
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(hp.warmup_ratio * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
