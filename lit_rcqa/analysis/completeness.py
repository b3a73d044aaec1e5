"""How exact the stored IG scores are: the completeness gap δ per layer and the integration steps used.

δ = |ΣIG_ℓ − (F(h_ℓ) − F(b))| / |F(h_ℓ) − F(b)| is stored per example and layer. Its distribution per
layer (median, 95th percentile, max, share above a threshold) says whether the number of steps was
enough; the embedding layer converges slowest. Exact quantiles need every δ, so δ is kept as one
float64 [n_layers] row per example in a `RowBuffer` (8 bytes per layer and example), and so are the
gradient evaluations (int32). With an accuracy target (`analyze.py --tolerance`, the default) each record flags
the (example, layer) pairs that missed it at the cap; they are counted here ("unconverged") and in the console
summary, and stay in the analyses, marked by this count.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from lit_rcqa.analysis.registry import Analysis, Context, Output, PerRecord, register
from lit_rcqa.analysis.rows import RowBuffer
from lit_rcqa.analysis.sections import by_layer, layer_rows, series
from lit_rcqa.attribution.record import AttributionRecord
from lit_rcqa.plots.report import Section

COLUMNS: tuple[str, ...] = ("median", "p95", "max", "share_above", "steps_mean", "steps_min", "steps_max",
                            "steps_median", "steps_p95", "unconverged")


@dataclass
class CompletenessAccumulator:
    layers: list[str]
    threshold: float = 0.05
    deltas: RowBuffer = field(default=None, repr=False)      # [n_examples, n_layers] float64 δ
    steps_total: np.ndarray = field(default=None, repr=False)  # [n_layers] int64 running sum of steps
    steps_min: np.ndarray = field(default=None, repr=False)    # [n_layers] int64
    steps_max: np.ndarray = field(default=None, repr=False)    # [n_layers] int64
    steps: RowBuffer = field(default=None, repr=False)         # [n_examples, n_layers] int32 evaluations
    unconverged: np.ndarray = field(default=None, repr=False)  # [n_layers] int64: flagged as missing the target

    def __post_init__(self):
        n = len(self.layers)
        if self.deltas is None:
            self.deltas = RowBuffer(n)
        if self.steps_total is None:
            self.steps_total = np.zeros(n, dtype=np.int64)
            self.steps_min = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
            self.steps_max = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
        if self.steps is None:
            self.steps = RowBuffer(n, dtype=np.int32)
        if self.unconverged is None:
            self.unconverged = np.zeros(n, dtype=np.int64)

    @property
    def count(self) -> int:
        return len(self.deltas)

    def add(self, record: AttributionRecord) -> None:
        if list(record.layers) != list(self.layers):
            raise ValueError(f"record {record.example_id!r} has layers {record.layers}, expected {self.layers}")
        self.deltas.append(np.asarray(record.delta, dtype=np.float64).reshape(len(self.layers)))
        steps = np.asarray(record.steps, dtype=np.int64).reshape(len(self.layers))
        self.steps_total += steps
        np.minimum(self.steps_min, steps, out=self.steps_min)
        np.maximum(self.steps_max, steps, out=self.steps_max)
        self.steps.append(steps)
        if record.converged is not None:
            self.unconverged += ~np.asarray(record.converged, dtype=bool).reshape(len(self.layers))

    def summary(self) -> np.ndarray:
        """[n_layers, len(COLUMNS)]: δ median, p95, max, share of examples with δ > threshold; steps mean/min/max/
        median/p95; the number of examples flagged as missing the accuracy target.

        Undefined gaps (NaN: F(h) = F(b)) are left out of the δ statistics.
        """
        if self.count == 0:
            raise ValueError("no examples were added; cannot summarise completeness")
        d = self.deltas.array()  # [n_examples, n_layers]
        defined = (~np.isnan(d)).sum(axis=0)  # [n_layers]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a layer with no defined δ gives NaN, as it should
            stats = [np.nanmedian(d, axis=0), np.nanpercentile(d, 95, axis=0), np.nanmax(d, axis=0)]
        above = np.where(defined > 0, (d > self.threshold).sum(axis=0) / np.maximum(defined, 1), np.nan)
        steps = [self.steps_total / self.count, self.steps_min.astype(np.float64), self.steps_max.astype(np.float64)]
        s = self.steps.array()
        steps += [np.median(s, axis=0), np.percentile(s, 95, axis=0)]
        return np.stack([*stats, above, *steps, self.unconverged.astype(np.float64)], axis=1)

    @property
    def n_unconverged(self) -> int:
        """(example, layer) pairs flagged as missing the accuracy target."""
        return int(self.unconverged.sum())


# --- always on: the completeness section -------------------------------------------------------------------
class _CompletenessAnalysis(PerRecord):
    @staticmethod
    def statistic(context: Context):
        return CompletenessAccumulator(list(context.layers))

    def finish(self, out) -> Output:
        from lit_rcqa.plots.convergence import plot_convergence

        acc, layers = self.acc, self.acc.layers
        stats = acc.summary()  # [L, len(COLUMNS)]
        flagged = (f" {acc.n_unconverged} (example, layer) pairs missed the accuracy target at the cap on "
                   "evaluations (column unconverged); they are kept in the analyses above, counted here."
                   if acc.n_unconverged else "")
        section = Section("Completeness of the attributions",
                          "δ = |ΣIG − (F(h) − F(b))| / |F(h) − F(b)| per example and layer: how far the "
                          f"attributions' sum is from the change they explain. δ below {acc.threshold:g} for most "
                          "examples means the integration used enough steps; the embedding layer converges slowest. "
                          "The right panel shows the gradient evaluations each layer used." + flagged)
        section.figures.append(out.figure("completeness", plot_convergence(acc.deltas.array(), acc.steps.array(),
                                                                           layers)))
        section.tables.append(out.table("completeness", ["layer", *COLUMNS], layer_rows(layers, *stats.T),
                                        meta={"threshold": acc.threshold}))
        series(out, "completeness", {"median δ": stats[:, 0], "95th percentile δ": stats[:, 1]},
               "Completeness gap per layer", "completeness gap δ")
        above = COLUMNS.index("share_above")
        out.tracker.bar(f"{out.prefix}/completeness_share_above", layers, 100 * stats[:, above],
                        f"Examples with δ above {acc.threshold:g}, per layer", "examples (%)")
        return Output(section, {c: by_layer(layers, stats[:, j]) for j, c in enumerate(COLUMNS)})


register(Analysis("completeness", "completeness gap δ and gradient evaluations per layer", _CompletenessAnalysis,
                  always=True))
