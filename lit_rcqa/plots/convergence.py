"""How converged the attributions are: the completeness gap δ and the gradient evaluations per layer."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from lit_rcqa.plots.figure import new_figure


def plot_convergence(deltas: np.ndarray, steps: np.ndarray, layer_names: Sequence[str],
                     tolerance: float | None = None) -> Figure:
    """Box plots per layer of δ (log scale, the accuracy target as a line) and of the evaluations used.

    deltas, steps: [n_examples, n_layers]; undefined gaps (NaN) are left out.
    """
    deltas, steps = np.asarray(deltas, dtype=np.float64), np.asarray(steps, dtype=np.float64)
    n = len(layer_names)
    if deltas.ndim != 2 or deltas.shape[1] != n or steps.shape != deltas.shape:
        raise ValueError(f"deltas {deltas.shape} and steps {steps.shape} must both be [n_examples, {n}]")
    fig = new_figure(max(8.0, 0.9 * n + 4.0), 4.0)
    left, right = fig.subplots(1, 2)
    # a gap of exactly 0 cannot sit on a log axis: show it at the smallest positive gap (or 1e-12)
    positive = deltas[np.isfinite(deltas) & (deltas > 0)]
    floor = positive.min() if positive.size else 1e-12
    columns = [np.maximum(d[np.isfinite(d)], floor) for d in deltas.T]
    left.boxplot(columns, whis=(5, 95), showfliers=True)
    left.set_yscale("log")
    if tolerance is not None:
        left.axhline(tolerance, color="tab:red", linestyle="--", label=f"target δ ≤ {tolerance:g}")
        left.legend(loc="upper right")
    left.set_ylabel("completeness gap δ")
    left.set_title("Completeness gap per layer (whiskers: 5th-95th percentile)")
    right.boxplot(list(steps.T), whis=(5, 95), showfliers=True)
    right.set_ylabel("gradient evaluations")
    right.set_title("Evaluations per layer")
    for ax in (left, right):
        ax.set_xticks(range(1, n + 1), labels=list(layer_names), rotation=45, ha="right")
        ax.grid(alpha=0.3)
    return fig
