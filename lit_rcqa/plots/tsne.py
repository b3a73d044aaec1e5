"""t-SNE scatter of one layer's tokens, coloured by category and labelled with the tokens."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lit_rcqa.plots.figure import new_figure

COLOURS = {"answer": "tab:red", "question": "tab:blue", "context": "tab:green", "special": "black",
           "other": "tab:gray"}


def draw_tsne(ax: Axes, points: np.ndarray, categories: Sequence[str], tokens: Sequence[str], *,
              labels: bool = True, fontsize: float = 6) -> None:
    """Scatter [T, 2] points on `ax`, one colour per category, each point labelled with its token."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or not len(points) == len(categories) == len(tokens):
        raise ValueError(f"expected points [T, 2] with T categories and tokens; got {points.shape}, "
                         f"{len(categories)} categories, {len(tokens)} tokens")
    cats = np.asarray(categories)
    for cat in [c for c in COLOURS if c in set(categories)] + sorted(set(categories) - set(COLOURS)):
        mask = cats == cat
        ax.scatter(points[mask, 0], points[mask, 1], s=14, c=COLOURS.get(cat, "tab:purple"), label=cat,
                   alpha=0.8)
    if labels:
        for (x, y), tok in zip(points, tokens):
            ax.annotate(tok, (x, y), fontsize=fontsize, alpha=0.8, xytext=(2, 2), textcoords="offset points")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_tsne(points: np.ndarray, categories: Sequence[str], tokens: Sequence[str], title: str) -> Figure:
    fig = new_figure(7.0, 6.0)
    ax = fig.add_subplot()
    draw_tsne(ax, points, categories, tokens)
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    return fig


def plot_tsne_grid(panels: Sequence[tuple[np.ndarray, Sequence[str], Sequence[str]]],
                   layer_names: Sequence[str], *, columns: int = 4, labels: bool = False) -> Figure:
    """One panel per layer from (points, categories, tokens) triples; token labels off by default (crowded)."""
    if len(panels) != len(layer_names) or not panels:
        raise ValueError(f"need one (points, categories, tokens) panel per layer; got {len(panels)} panels "
                         f"for {len(layer_names)} layers")
    cols = min(columns, len(panels))
    rows = -(-len(panels) // cols)
    fig = new_figure(3.2 * cols, 3.0 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (points, cats, toks), name in zip(axes, panels, layer_names):
        draw_tsne(ax, points, cats, toks, labels=labels, fontsize=5)
        ax.set_title(name)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    handles, names = {}, []
    for ax in axes[:len(panels)]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    names = [c for c in COLOURS if c in handles] + sorted(set(handles) - set(COLOURS))
    fig.legend([handles[n] for n in names], names, loc="outside lower center", ncols=len(names))
    return fig
