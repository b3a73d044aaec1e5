"""Jensen–Shannon divergence between layers' importance distributions over the passage.

Reproduces the paper's layer×layer heatmaps (the seed's `jensen_shannon.py` / `graph_js.py`):
JSD in bits (log base 2, so values lie in [0, 1]) as the `dit` library the paper used computes it.
Three variants: the distributions as they are, only their top-k tokens kept, or their top-k removed
(k = 2 in the seed's code, 5 in the paper's slides). Pure functions; averaging over many examples
streams through `JSDAccumulator` (a running sum and count).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Literal

import numpy as np
from scipy.special import entr

from lit_rcqa.analysis.registry import Analysis, Context, Item, Output, register
from lit_rcqa.attribution.record import AttributionRecord
from lit_rcqa.plots.report import Section

Variant = Literal["all", "topk_retained", "topk_removed"]
VARIANTS: tuple[str, ...] = ("all", "topk_retained", "topk_removed")


def normalize(importance: np.ndarray) -> np.ndarray:
    """Raw non-negative importances -> distributions along the last axis.

    A row with no mass (all zeros) carries no information about where the layer looks, so it
    becomes uniform rather than NaN; negative values (signed scores passed by mistake) are an error.
    """
    x = np.asarray(importance, dtype=np.float64)  # [..., N]
    if np.any(x < 0):
        raise ValueError("importances must be non-negative (L2 norms); got negative values")
    total = x.sum(axis=-1, keepdims=True)  # [..., 1]
    uniform = np.full_like(x, 1.0 / max(x.shape[-1], 1))
    return np.where(total > 0, x / np.where(total > 0, total, 1.0), uniform)


def _topk_mask(dist: np.ndarray, k: int) -> np.ndarray:
    """True at each row's k largest entries (ties broken towards the earlier token)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    order = np.argsort(-dist, axis=-1, kind="stable")[..., :k]  # [..., min(k, N)]
    mask = np.zeros(dist.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=-1)
    return mask


def keep_topk(dist: np.ndarray, k: int) -> np.ndarray:
    """Keep only each row's top-k entries, zero the rest, renormalise."""
    dist = np.asarray(dist, dtype=np.float64)
    return normalize(np.where(_topk_mask(dist, k), dist, 0.0))


def remove_topk(dist: np.ndarray, k: int) -> np.ndarray:
    """Zero each row's top-k entries and renormalise the rest.

    A row whose remaining tokens carry no mass becomes uniform over those remaining tokens (over all
    tokens if k >= N), so the removed tokens stay removed.
    """
    dist = np.asarray(dist, dtype=np.float64)
    removed = _topk_mask(dist, k)  # [..., N]
    kept = np.where(removed, 0.0, dist)
    empty = kept.sum(axis=-1, keepdims=True) <= 0  # [..., 1]
    fallback = np.where(removed.all(axis=-1, keepdims=True), 1.0, (~removed).astype(np.float64))
    return normalize(np.where(empty, fallback, kept))


def apply_variant(dist: np.ndarray, variant: Variant = "all", k: int = 2) -> np.ndarray:
    """The distribution the chosen heatmap variant compares."""
    if variant == "all":
        return normalize(dist)
    if variant == "topk_retained":
        return keep_topk(dist, k)
    if variant == "topk_removed":
        return remove_topk(dist, k)
    raise ValueError(f"unknown JSD variant {variant!r}; choose one of {', '.join(VARIANTS)}")


def _entropy_bits(p: np.ndarray) -> np.ndarray:
    return entr(p).sum(axis=-1) / np.log(2.0)  # entr(x) = -x ln x, with 0 ln 0 = 0


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """JSD(p, q) in bits = H((p+q)/2) - (H(p) + H(q))/2; inputs are normalised first."""
    p, q = normalize(p), normalize(q)
    if p.shape != q.shape:
        raise ValueError(f"distributions differ in shape: {p.shape} vs {q.shape}")
    value = _entropy_bits((p + q) / 2) - (_entropy_bits(p) + _entropy_bits(q)) / 2
    return float(np.clip(value, 0.0, 1.0))  # clip float round-off just outside the bounds


def pairwise_jsd(dists: np.ndarray) -> np.ndarray:
    """[L, N] distributions -> [L, L] matrix of JSD in bits (symmetric, zero diagonal)."""
    p = normalize(dists)  # [L, N]
    h = _entropy_bits(p)  # [L]
    mix = (p[:, None, :] + p[None, :, :]) / 2  # [L, L, N]
    matrix = _entropy_bits(mix) - (h[:, None] + h[None, :]) / 2  # [L, L]
    matrix = np.clip((matrix + matrix.T) / 2, 0.0, 1.0)
    np.fill_diagonal(matrix, 0.0)
    return matrix


def layer_jsd_matrix(importance: np.ndarray, variant: Variant = "all", k: int = 2) -> np.ndarray:
    """[L, N] raw passage importances of one example -> [L, L] JSD between its layers."""
    return pairwise_jsd(apply_variant(importance, variant, k))


def passage_importance(record: AttributionRecord) -> np.ndarray:
    """[n_layers, n_passage] raw importances of the passage tokens.

    The passage is `passage_start:passage_end` (after the first [SEP], before the final one); the
    seed sliced from the first [SEP] to the end, i.e. also counted the two [SEP] tokens.
    """
    return np.asarray(record.importance[:, record.passage_start:record.passage_end], dtype=np.float64)


def record_jsd_matrix(record: AttributionRecord, variant: Variant = "all", k: int = 2) -> np.ndarray:
    """[n_layers, n_layers] JSD between the layers of one record, over its passage tokens."""
    return layer_jsd_matrix(passage_importance(record), variant, k)


@dataclass
class JSDAccumulator:
    """Running mean of per-example [L, L] matrices; memory stays flat however many examples stream by."""

    layers: list[str]
    variant: Variant = "all"
    k: int = 2
    total: np.ndarray | None = field(default=None, repr=False)  # [L, L] running sum
    count: int = 0

    def add_matrix(self, matrix: np.ndarray) -> None:
        matrix = np.asarray(matrix, dtype=np.float64)
        expected = (len(self.layers), len(self.layers))
        if matrix.shape != expected:
            raise ValueError(f"JSD matrix has shape {matrix.shape}, expected {expected}")
        self.total = matrix.copy() if self.total is None else self.total + matrix
        self.count += 1

    def add(self, record: AttributionRecord) -> None:
        if list(record.layers) != list(self.layers):
            raise ValueError(f"record {record.example_id!r} has layers {record.layers}, expected {self.layers}")
        self.add_matrix(record_jsd_matrix(record, self.variant, self.k))

    def mean(self) -> np.ndarray:
        """[L, L] mean over the examples added so far."""
        if self.count == 0:
            raise ValueError("no examples were added; cannot average JSD over zero examples")
        return self.total / self.count


def mean_jsd_matrix(records: Iterable[AttributionRecord], layers: list[str], variant: Variant = "all",
                    k: int = 2, max_examples: int | None = None) -> np.ndarray:
    """[L, L] JSD averaged over (at most `max_examples` of) the records, streamed one at a time."""
    acc = JSDAccumulator(layers=list(layers), variant=variant, k=k)
    for i, record in enumerate(records):
        if max_examples is not None and i >= max_examples:
            break
        acc.add(record)
    return acc.mean()


# --- the "jsd" analysis: a heatmap and a table per variant ---------------------------------------------------
class _JSDAnalysis:
    def __init__(self, context: Context):
        self.layers = list(context.layers)
        self.accs = {"jsd_all": JSDAccumulator(self.layers, "all")}
        for k in context.jsd_k:
            for variant in ("topk_retained", "topk_removed"):
                self.accs[f"jsd_{variant}_k{k}"] = JSDAccumulator(self.layers, variant, k)

    def add(self, item: Item) -> None:
        for acc in self.accs.values():
            acc.add(item.record)

    def finish(self, out) -> Output:
        from lit_rcqa.plots.heatmap import plot_jsd_heatmap

        n = self.accs["jsd_all"].count
        section = Section("Jensen–Shannon divergence between layers",
                          f"Each cell is the JSD (bits, 0 to 1) between two layers' importance distributions over "
                          f"the passage, averaged over {n} examples. JSD near 0: the two layers attend to the same "
                          "passage tokens; near 1: to different ones. 'top-k retained' compares only each layer's k "
                          "most important tokens, 'top-k removed' everything but them.")
        off_diagonal = ~np.eye(len(self.layers), dtype=bool)
        headline = {}
        for name, acc in self.accs.items():
            matrix = acc.mean()  # [L, L]
            label = "all tokens" if acc.variant == "all" else f"{acc.variant.replace('_', ' ')}, k = {acc.k}"
            section.figures.append(out.figure(name, plot_jsd_heatmap(matrix, self.layers,
                                                                     f"JSD between layers ({label})"), label))
            rows = [[layer, *row] for layer, row in zip(self.layers, matrix)]
            section.tables.append(out.table(name, ["layer", *self.layers], rows,
                                            meta={"variant": acc.variant, "k": acc.k, "n_examples": acc.count}))
            values = matrix[off_diagonal]
            headline[name] = {"min": float(values.min()) if values.size else None,
                              "max": float(values.max()) if values.size else None}
        return Output(section, headline)


register(Analysis("jsd", "Jensen–Shannon divergence between the layers' importance over the passage (heatmaps)",
                  _JSDAnalysis))
