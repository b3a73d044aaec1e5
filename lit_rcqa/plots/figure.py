"""A fresh matplotlib Figure on the Agg canvas, outside pyplot's global figure registry.

Plot functions build figures with this, so they never depend on a display, never leak figures
into pyplot's state, and leave saving and logging to the caller (`fig.savefig(...)`).
"""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig
