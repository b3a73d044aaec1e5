"""The prediction-loop system for layer-wise IG: one batch of dev examples in, plain per-example results out.

Only `Trainer.predict` uses it (with `inference_mode=False`, so gradients can be taken); writing is the
job of a prediction-writer callback (the caller's, calling `store.write_shard`). Per example, `predict_step`:
  1. scores every window (feature) of the example with the plain HF model;
  2. picks the explained window as the paper does, with the training run's own post-processing
     (`postprocess_predictions` over all windows): the window holding the best n-best answer, and that
     answer's start/end tokens as the explained span (`explain="gold"`: the window holding the first
     gold answer, with its max-context start token, and that span);
  3. runs `integrated_gradients` on that window's real tokens only (no padding), all layers in one call;
  4. returns an `AttributionRecord` (numpy arrays and text, nothing on the device): the record the store
     writes and the analyses read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import LightningModule
from typing_extensions import override

from lit_rcqa.attribution.integrated_gradients import IGSettings, integrated_gradients
from lit_rcqa.attribution.layers import EncoderAdapter
from lit_rcqa.attribution.record import AttributionRecord, layer_name
from lit_rcqa.data.example import QAExample
from lit_rcqa.data.features import Features, collate_features
from lit_rcqa.evaluation.postprocess import DEFAULT_POSTPROCESS, PostprocessSettings, postprocess_predictions

Explain = Literal["predicted", "gold"]
BaselineKind = Literal["zero", "mean"]


@dataclass
class ExampleItem:
    """One dev example and all its windows (`features.example_index` is all 0)."""

    position: int          # index of the example in the dev split: the stable order of all outputs
    example: QAExample
    features: Features


@dataclass(frozen=True)
class Window:
    feature: int                    # which window of the example is explained
    span: tuple[int, int] | None    # explained (start, end) tokens in it, inclusive; None: IG's own best span
    source: str                     # "predicted", "gold", or "predicted (no gold answer in any window)"
    nbest_probability: float        # probability of the top n-best answer (the model's confidence)


def choose_window(example: QAExample, features: Features, start_logits: list[np.ndarray],
                  end_logits: list[np.ndarray], post: PostprocessSettings, explain: Explain = "predicted") -> Window:
    """The window and span to explain (step 2 of the module docstring). Logits: one [T_f] array per window."""
    _, nbest = postprocess_predictions([example], features, start_logits, end_logits, n_best=post.n_best,
                                       max_answer_length=post.max_answer_length, version_2=post.version_2,
                                       null_threshold=post.null_threshold)
    entries = nbest[example.id]
    confidence = float(entries[0].probability)
    if explain == "gold":
        candidates = [f for f in range(len(features)) if features.start_positions[f] != features.cls_index[f]]
        if candidates:  # as post-processing scores a start only in its max-context window, prefer that one
            best = next((f for f in candidates if features.token_is_max_context[f][features.start_positions[f]]),
                        candidates[0])
            return Window(best, (features.start_positions[best], features.end_positions[best]), "gold", confidence)
    # The best real span (a v2 null entry has no text to explain); no valid span at all: IG picks one in window 0.
    entry = next((e for e in entries if e.start_char >= 0), None)
    source = "predicted" if explain == "predicted" else "predicted (no gold answer in any window)"
    if entry is None:
        return Window(0, None, source, confidence)
    return Window(entry.feature_index, (entry.start_token, entry.end_token), source, confidence)


def mean_baseline(layer: int, h: torch.Tensor) -> torch.Tensor:
    """b = the mean hidden state over the tokens, at every position ([T, d])."""
    return h.mean(dim=0, keepdim=True).expand_as(h)


class AttributionSystem(LightningModule):
    """Holds the plain QA model (eval mode, frozen) and the IG settings; `predict_step` explains a batch."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, layers: list[int], settings: IGSettings, *,
                 post: PostprocessSettings = DEFAULT_POSTPROCESS, explain: Explain = "predicted",
                 baseline: BaselineKind = "zero", hidden_examples: int = 200, hidden_dtype: str = "float16"):
        super().__init__()
        self.model = model.eval().requires_grad_(False)  # IG differentiates w.r.t. hidden states only
        self.adapter = EncoderAdapter(self.model)
        self.tokenizer, self.layer_indices, self.settings = tokenizer, list(layers), settings
        self.post, self.explain, self.baseline = post, explain, baseline
        self.hidden_examples, self.hidden_dtype = hidden_examples, np.dtype(hidden_dtype)

    @torch.no_grad()
    def _window_logits(self, features: Features) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Start/end logits of every window of one example, each cut to its real length ([T_f])."""
        rows = [{"input_ids": ids, "attention_mask": mask, "start_positions": 0, "end_positions": 0,
                 "feature_index": f} | ({} if features.token_type_ids is None
                                        else {"token_type_ids": features.token_type_ids[f]})
                for f, (ids, mask) in enumerate(zip(features.input_ids, features.attention_mask))]
        batch = collate_features(rows, self.tokenizer.pad_token_id)
        inputs = {k: batch[k].to(self.device) for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        out = self.model(**inputs)
        lengths = [len(ids) for ids in features.input_ids]
        starts = [out.start_logits[i, :n].float().cpu().numpy() for i, n in enumerate(lengths)]
        ends = [out.end_logits[i, :n].float().cpu().numpy() for i, n in enumerate(lengths)]
        return starts, ends

    def explain_example(self, item: ExampleItem) -> AttributionRecord:
        features, example = item.features, item.example
        window = choose_window(example, features, *self._window_logits(features), self.post, self.explain)
        f = window.feature
        real = np.flatnonzero(np.asarray(features.attention_mask[f]))  # drop padding (pad_to_max_length runs)
        ids = torch.as_tensor(features.input_ids[f], dtype=torch.long)[real].to(self.device)  # [T]
        types = None if features.token_type_ids is None else \
            torch.as_tensor(features.token_type_ids[f], dtype=torch.long)[real].to(self.device)  # [T]
        offsets = [features.offsets[f][i] for i in real.tolist()]
        passage = [i for i, o in enumerate(offsets) if o is not None]
        mask = torch.zeros(len(offsets), dtype=torch.bool, device=self.device)  # [T] passage tokens
        mask[passage] = True
        span = window.span
        if span is not None and len(real) != len(features.input_ids[f]):
            span = tuple(int(np.searchsorted(real, s)) for s in span)  # positions among the real tokens
        keep = item.position < self.hidden_examples
        with torch.enable_grad():
            result = integrated_gradients(self.adapter, ids, token_type_ids=types, layers=self.layer_indices,
                                          passage=mask, span=span, settings=self.settings, keep_hidden=keep,
                                          baseline=mean_baseline if self.baseline == "mean" else None)
        off = np.array([o if o is not None else (-1, -1) for o in offsets], dtype=np.int64).reshape(-1, 2)
        s, e = result.pred_start, result.pred_end
        hidden = None
        if keep and result.hidden is not None:
            hidden = np.stack(result.hidden).astype(self.hidden_dtype)  # [n_layers, T, d]
        ids_np = ids.cpu().numpy().astype(np.int64)
        return AttributionRecord(
            position=item.position, example_id=example.id, question=example.question, context=example.context,
            tokens=self.tokenizer.convert_ids_to_tokens(ids_np.tolist()), offsets=off,
            passage_start=passage[0], passage_end=passage[-1] + 1, layers=[layer_name(i) for i in result.layers],
            importance=result.importance, signed=result.signed, delta=np.asarray(result.delta, dtype=np.float64),
            steps=np.asarray(result.steps, dtype=np.int32), pred_start=s, pred_end=e,
            pred_text=example.context[off[s][0]:off[e][1]] if off[s][0] >= 0 and off[e][1] >= 0 else "",
            start_prob=result.start_prob, end_prob=result.end_prob, target_value=result.target_value,
            nbest_probability=window.nbest_probability, window=f, explained=window.source,
            gold_texts=tuple(a.text for a in example.answers), evidence_span=example.evidence_span,
            input_ids=ids_np, token_type_ids=None if types is None else types.cpu().numpy().astype(np.int64),
            hidden=hidden, converged=result.converged)

    @override
    def transfer_batch_to_device(self, batch: list[ExampleItem], device, dataloader_idx: int) -> list[ExampleItem]:
        return batch  # python objects; `explain_example` moves the one window it scores

    @override
    def predict_step(self, batch: list[ExampleItem], batch_idx: int,
                     dataloader_idx: int = 0) -> list[AttributionRecord]:
        return [self.explain_example(item) for item in batch]

    @override
    def on_predict_end(self) -> None:
        # Every rank's shards are on disk before rank 0 goes on to read them.
        self.trainer.strategy.barrier("ig-shards-written")
