"""How exact the stored IG scores are: the completeness gap δ per layer and the integration steps used.

δ = |ΣIG_ℓ − (F(h_ℓ) − F(b))| / |F(h_ℓ) − F(b)| is stored per example and layer. Its distribution per
layer (median, 95th percentile, max, share above a threshold) says whether the number of steps was
enough; the embedding layer converges slowest. Kept as one small [n_layers] row per example.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from lit_rcqa.attribution.record import AttributionRecord

COLUMNS: tuple[str, ...] = ("median", "p95", "max", "share_above", "steps_mean", "steps_min", "steps_max")


@dataclass
class CompletenessAccumulator:
    layers: list[str]
    threshold: float = 0.05
    deltas: list[np.ndarray] = field(default_factory=list, repr=False)   # n_examples × [n_layers]
    steps: list[np.ndarray] = field(default_factory=list, repr=False)    # n_examples × [n_layers]

    def add(self, record: AttributionRecord) -> None:
        if list(record.layers) != list(self.layers):
            raise ValueError(f"record {record.example_id!r} has layers {record.layers}, expected {self.layers}")
        self.deltas.append(np.asarray(record.delta, dtype=np.float64).reshape(len(self.layers)))
        self.steps.append(np.asarray(record.steps, dtype=np.int64).reshape(len(self.layers)))

    def summary(self) -> np.ndarray:
        """[n_layers, len(COLUMNS)]: δ median, p95, max, share of examples with δ > threshold; steps mean/min/max.

        Undefined gaps (NaN: F(h) = F(b)) are left out of the δ statistics.
        """
        if not self.deltas:
            raise ValueError("no examples were added; cannot summarise completeness")
        d = np.stack(self.deltas)  # [n_examples, n_layers]
        s = np.stack(self.steps).astype(np.float64)  # [n_examples, n_layers]
        defined = (~np.isnan(d)).sum(axis=0)  # [n_layers]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a layer with no defined δ gives NaN, as it should
            stats = [np.nanmedian(d, axis=0), np.nanpercentile(d, 95, axis=0), np.nanmax(d, axis=0)]
        above = np.where(defined > 0, (d > self.threshold).sum(axis=0) / np.maximum(defined, 1), np.nan)
        return np.stack([*stats, above, s.mean(axis=0), s.min(axis=0), s.max(axis=0)], axis=1)
