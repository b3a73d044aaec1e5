"""Line plots of per-layer quantities: word-role shares, numerical-word shares, evidence shares, …"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from lit_rcqa.plots.figure import new_figure


def plot_layer_series(values: Mapping[str, np.ndarray], layer_names: Sequence[str], ylabel: str,
                      title: str) -> Figure:
    """One line per series across the layers (x axis: canonical layer names)."""
    n = len(layer_names)
    fig = new_figure(max(5.0, 0.45 * n + 2.5), 4.0)
    ax = fig.add_subplot()
    for label, series in values.items():
        series = np.asarray(series, dtype=np.float64)
        if series.shape != (n,):
            raise ValueError(f"series {label!r} has shape {series.shape}, expected ({n},) for {n} layers")
        ax.plot(range(n), series, marker="o", label=label)
    ax.set_xticks(range(n), labels=list(layer_names), rotation=45, ha="right")
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if values:
        ax.legend()
    return fig


def plot_role_shares(table, layer_names: Sequence[str], title: str = "Roles of each layer's top-k words") -> Figure:
    """Role shares (%) across layers; `table` is a RoleTable or a mapping role -> [n_layers] shares."""
    series = table.as_dict() if hasattr(table, "as_dict") else dict(table)
    return plot_layer_series(series, layer_names, ylabel="share of top-k words (%)", title=title)
