"""Helpers the analyses share when they turn a finished accumulator into outputs (see `registry.Output`).

Layer series go to the files as rows (one per layer) and to the tracker as native line plots (`out.tracker`, a
`tracking.Dashboard`); headline numbers per layer as {layer: value or None}.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def by_layer(layers: Sequence[str], values) -> dict:
    """{layer: float}, None where the value is not finite (JSON has no NaN)."""
    return {name: (None if not np.isfinite(v) else float(v)) for name, v in zip(layers, values)}


def layer_rows(layers: Sequence[str], *columns) -> list[list]:
    """One table row per layer: its name, then the layer's value of each column."""
    return [[name, *(float(c[i]) for c in columns)] for i, name in enumerate(layers)]


def series(out, name: str, values: dict, title: str, y: str) -> None:
    """The same per-layer lines as the figure, as a native tracker plot (W&B line plot, TensorBoard scalars)."""
    lines = {k: np.asarray(v, dtype=float).tolist() for k, v in values.items()}
    out.tracker.layer_series(f"{out.prefix}/{name}", lines, title, y)


def safe_name(text: str) -> str:
    """A file-name stem from free text (an example id)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:48] or "example"
