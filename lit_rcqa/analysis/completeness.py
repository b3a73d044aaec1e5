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

from lit_rcqa.analysis.rows import RowBuffer
from lit_rcqa.attribution.record import AttributionRecord

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
