"""Decision flips: does zeroing the token IG ranks first change the answer more often than a random token?

The seed's check that IG means something. For each scored layer ℓ of a record we zero h_ℓ at
  - the top-1 passage token by that layer's importance, and, as the control,
  - a uniformly random other passage token (seeded per example, so results do not depend on order),
run layers ℓ+1 … L and the QA head (`EncoderAdapter.forward_from`, both rows in one batch), take the
best span by the usual rule (max start+end logit, end >= start, at most the training run's
`max_answer_length` tokens, inside the passage) and record whether it differs from the unperturbed
model's span. Hidden states come from one prefix-cached pass per record. Per layer, `FlipAccumulator` gives both flip rates and their ratio.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import torch

from lit_rcqa.analysis.registry import Analysis, Context, Item, Output, register
from lit_rcqa.analysis.sections import by_layer, series
from lit_rcqa.attribution.integrated_gradients import best_spans
from lit_rcqa.attribution.layers import EncoderAdapter, parse_layers
from lit_rcqa.attribution.record import AttributionRecord
from lit_rcqa.evaluation.postprocess import DEFAULT_POSTPROCESS
from lit_rcqa.plots.report import Section


def random_token(example_id: str, layer: int, passage_start: int, passage_end: int, exclude: int,
                 seed: int = 0) -> int:
    """A uniformly random passage token other than `exclude`, or -1 if there is none.

    Seeded by (seed, example id, layer): the same draw whatever order or shard the record comes in.
    """
    choices = [t for t in range(passage_start, passage_end) if t != exclude]
    if not choices:
        return -1
    rng = np.random.default_rng([seed, zlib.crc32(example_id.encode("utf-8")), layer])
    return int(choices[rng.integers(len(choices))])


@dataclass
class FlipResult:
    """One record's flips; arrays are [n_layers] in the record's layer order."""

    layers: list[str]
    top1_token: np.ndarray       # [n_layers] token index zeroed (top-1 by importance)
    random_token: np.ndarray     # [n_layers] token index zeroed as the control; -1 if the passage had no other token
    top1_flipped: np.ndarray     # [n_layers] bool
    random_flipped: np.ndarray   # [n_layers] bool (False where random_token is -1)
    original_span: tuple[int, int]   # the unperturbed model's span (compare with record.pred_start/pred_end)


@torch.no_grad()
def record_flips(record: AttributionRecord, model, *, seed: int = 0,
                 max_answer_length: int = DEFAULT_POSTPROCESS.max_answer_length) -> FlipResult:
    """Zero the top-1 and a random passage token at each of the record's layers and test whether the span changes."""
    if record.input_ids is None:
        raise ValueError(f"record {record.example_id!r} has no input_ids; decision flips re-run the model on them")
    adapter = model if isinstance(model, EncoderAdapter) else EncoderAdapter(model)
    ids = torch.as_tensor(np.asarray(record.input_ids), dtype=torch.long)[None]  # [1, T]
    types = None if record.token_type_ids is None else \
        torch.as_tensor(np.asarray(record.token_type_ids), dtype=torch.long)[None]
    ps, pe = record.passage_start, record.passage_end
    # 1. prefix cache: every layer's hidden state from one pass; the unperturbed span from the top one
    states = adapter.hidden_states(ids, None, types)  # L+1 × [1, T, d]
    original = best_spans(*adapter.forward_from(adapter.num_layers, states[-1]), (ps, pe),
                          max_answer_length)[0].cpu().numpy()
    n = len(record.layers)
    top1, rand = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    top1_flip, rand_flip = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    for row, name in enumerate(record.layers):
        index = parse_layers(name, adapter.num_layers)[0]
        # 2. the two tokens to zero at this layer
        top1[row] = ps + int(np.argmax(record.importance[row, ps:pe]))
        rand[row] = random_token(record.example_id, index, ps, pe, int(top1[row]), seed)
        # 3. both perturbations in one batch of two rows; row 1 is left intact when there is no control token
        h = states[index].repeat(2, 1, 1)  # [2, T, d]
        h[0, top1[row]] = 0.0
        if rand[row] >= 0:
            h[1, rand[row]] = 0.0
        spans = best_spans(*adapter.forward_from(index, h), (ps, pe), max_answer_length).cpu().numpy()  # [2, 2]
        changed = (spans != original[None]).any(axis=1)  # [2]
        top1_flip[row] = changed[0]
        rand_flip[row] = changed[1] and rand[row] >= 0
    return FlipResult(list(record.layers), top1, rand, top1_flip, rand_flip, (int(original[0]), int(original[1])))


@dataclass
class FlipAccumulator:
    """Per-layer counts of flips over records: rates for top-1 and random, and their ratio."""

    layers: list[str]
    max_answer_length: int = DEFAULT_POSTPROCESS.max_answer_length  # the training run's: spans are found as it did
    top1_flips: np.ndarray = field(default=None, repr=False)     # [n_layers] int
    random_flips: np.ndarray = field(default=None, repr=False)   # [n_layers] int
    n_top1: np.ndarray = field(default=None, repr=False)         # [n_layers] records tried
    n_random: np.ndarray = field(default=None, repr=False)       # [n_layers] records with a control token
    n_examples: int = 0
    n_mismatched: int = 0   # records whose stored span differs from the model's unperturbed one

    def __post_init__(self):
        for name in ("top1_flips", "random_flips", "n_top1", "n_random"):
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(len(self.layers), dtype=np.int64))

    def add_result(self, result: FlipResult, stored_span: tuple[int, int] | None = None) -> None:
        if list(result.layers) != list(self.layers):
            raise ValueError(f"flip result has layers {result.layers}, expected {self.layers}")
        has_control = np.asarray(result.random_token) >= 0
        self.top1_flips += np.asarray(result.top1_flipped, dtype=bool)
        self.random_flips += np.asarray(result.random_flipped, dtype=bool) & has_control
        self.n_top1 += 1
        self.n_random += has_control
        self.n_examples += 1
        if stored_span is not None and tuple(stored_span) != tuple(result.original_span):
            self.n_mismatched += 1

    def add(self, record: AttributionRecord, model, seed: int = 0) -> FlipResult:
        result = record_flips(record, model, seed=seed, max_answer_length=self.max_answer_length)
        self.add_result(result, (record.pred_start, record.pred_end))
        return result

    def top1_rate(self) -> np.ndarray:
        """[n_layers] share of records whose span changed when the top-1 token was zeroed (NaN if none)."""
        return _rate(self.top1_flips, self.n_top1)

    def random_rate(self) -> np.ndarray:
        """[n_layers] share of records whose span changed when the random token was zeroed (NaN if none)."""
        return _rate(self.random_flips, self.n_random)

    def ratio(self) -> np.ndarray:
        """[n_layers] top-1 rate / random rate: inf when only top-1 flips, NaN when neither does."""
        top, rand = self.top1_rate(), self.random_rate()
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(rand > 0, top / np.where(rand > 0, rand, 1.0), np.where(top > 0, np.inf, np.nan))


def _rate(count: np.ndarray, total: np.ndarray) -> np.ndarray:
    total = np.asarray(total, dtype=np.float64)
    return np.where(total > 0, count / np.maximum(total, 1), np.nan)


# --- the "flips" analysis ----------------------------------------------------------------------------------
class _FlipsAnalysis:
    def __init__(self, context: Context):
        self.layers = list(context.layers)
        self.adapter = None if context.model is None else EncoderAdapter(context.model)
        self.acc = FlipAccumulator(self.layers, context.postprocess.max_answer_length)
        self.without_ids = 0   # records stored without input ids: nothing to re-run

    def add(self, item: Item) -> None:
        if self.adapter is None:
            return
        if item.record.input_ids is None:
            self.without_ids += 1
        else:
            item.flips = self.acc.add(item.record, self.adapter)

    def finish(self, out) -> Output:
        from lit_rcqa.plots.layers import plot_layer_series

        section = Section("Decision flips",
                          "At each layer, the hidden state of the layer's top-1 IG passage token (or, as control, of "
                          "a random other passage token) is zeroed and the layers above are run again: how often does "
                          "the predicted span change? A ratio well above 1 means IG's top token matters more than "
                          "chance.")
        if self.adapter is None:
            section.notes.append("skipped: no model was given, and flips re-run the model")
            return Output(section, notes=["decision flips skipped: no model was given"])
        acc, layers = self.acc, self.layers
        if self.without_ids:
            section.notes.append(f"{self.without_ids} records had no input ids and were left out")
        if acc.n_mismatched:
            section.notes.append(f"{acc.n_mismatched} records: the model's own span differs from the stored one "
                                 "(flips compare against the model's)")
        if acc.n_examples == 0:
            section.notes.append("no record could be perturbed")
            return Output(section)
        top, rand, ratio = acc.top1_rate(), acc.random_rate(), acc.ratio()
        lines = {"top-1 IG token": 100 * top, "random passage token": 100 * rand}
        title, y = "Decision flips after zeroing one token", "predictions changed (%)"
        section.figures.append(out.figure("flips", plot_layer_series(lines, layers, y, title)))
        series(out, "flips", lines, title, y)
        section.tables.append(out.table("flips", ["layer", "top1_rate", "random_rate", "ratio", "n"],
                                        [[n, t, r, x, int(c)] for n, t, r, x, c in
                                         zip(layers, top, rand, ratio, acc.n_top1)],
                                        meta={"n_examples": acc.n_examples, "n_mismatched": acc.n_mismatched,
                                              "ratio": "top1_rate / random_rate; null where random_rate is 0"}))
        return Output(section, {"top1_rate": by_layer(layers, top), "random_rate": by_layer(layers, rand),
                                "ratio": by_layer(layers, ratio), "n": acc.n_examples})


register(Analysis("flips", "how often zeroing a layer's top-1 IG token changes the answer, against a random token "
                  "(re-runs the model)", _FlipsAnalysis))
