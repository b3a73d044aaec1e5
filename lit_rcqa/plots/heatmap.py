"""Annotated layer×layer heatmap (JSD between layers' importance distributions)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from lit_rcqa.plots.figure import new_figure


def plot_jsd_heatmap(matrix: np.ndarray, layer_names: Sequence[str], title: str, *, vmax: float | None = None,
                     fmt: str = "{:.2f}") -> Figure:
    """[L, L] matrix -> heatmap with each cell's value written in it; colour scale from 0 (default top: max)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    n = len(layer_names)
    if matrix.shape != (n, n):
        raise ValueError(f"matrix has shape {matrix.shape}, expected {(n, n)} for {n} layer names")
    size = max(4.0, 0.55 * n + 2.0)
    fig = new_figure(size + 1.0, size)
    ax = fig.add_subplot()
    top = float(vmax) if vmax is not None else max(float(matrix.max()), 1e-12)
    image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=top)
    ax.set_xticks(range(n), labels=list(layer_names), rotation=90)
    ax.set_yticks(range(n), labels=list(layer_names))
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="JSD (bits)")
    # 1. annotate: dark text on bright cells, light text on dark ones
    for i in range(n):
        for j in range(n):
            bright = matrix[i, j] > 0.6 * top
            ax.text(j, i, fmt.format(matrix[i, j]), ha="center", va="center", fontsize=7,
                    color="black" if bright else "white")
    return fig
