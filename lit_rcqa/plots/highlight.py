"""Qualitative view: the passage once per layer, with that layer's top-k words highlighted (HTML)."""

from __future__ import annotations

import html
from typing import Sequence

import numpy as np

_STYLE = """<style>
.lit-rcqa-highlight { font-family: sans-serif; font-size: 13px; line-height: 1.6; }
.lit-rcqa-highlight .layer { margin: 0 0 8px 0; }
.lit-rcqa-highlight .name { font-family: monospace; font-weight: bold; margin-right: 6px; }
.lit-rcqa-highlight mark { padding: 0 2px; border-radius: 3px; }
.lit-rcqa-highlight sup { font-size: 9px; color: #555; }
</style>"""


def _highlighted_passage(context: str, spans: np.ndarray, scores: np.ndarray, top_k: int) -> str:
    """The escaped context with the top-k words wrapped in <mark>, darker for higher ranks."""
    order = np.argsort(-scores, kind="stable")[:top_k]
    rank = {int(w): r for r, w in enumerate(order)}
    out, pos = [], 0
    for w in sorted(rank, key=lambda j: spans[j][0]):
        s, e = int(spans[w][0]), int(spans[w][1])
        r = rank[w]
        alpha = 1.0 - 0.7 * r / max(top_k - 1, 1)
        out.append(html.escape(context[pos:s]))
        out.append(f'<mark style="background-color: rgba(255, 140, 0, {alpha:.2f})" '
                   f'title="rank {r + 1}, importance {scores[w]:.3f}">{html.escape(context[s:e])}'
                   f'<sup>{r + 1}</sup></mark>')
        pos = e
    out.append(html.escape(context[pos:]))
    return "".join(out)


def highlight_html(context: str, word_spans: np.ndarray, word_importances: np.ndarray,
                   layer_names: Sequence[str], top_k: int = 5, title: str | None = None) -> str:
    """Self-contained HTML snippet (inline style, no scripts): one line per layer with its top-k words marked.

    word_spans: [W, 2] char spans into `context`; word_importances: [n_layers, W]. Every piece of
    text (passage, layer names, title) is HTML-escaped.
    """
    spans = np.asarray(word_spans, dtype=np.int64).reshape(-1, 2)
    imp = np.atleast_2d(np.asarray(word_importances, dtype=np.float64))
    if imp.shape != (len(layer_names), len(spans)):
        raise ValueError(f"word_importances has shape {imp.shape}, expected {(len(layer_names), len(spans))}")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    parts = [_STYLE, '<div class="lit-rcqa-highlight">']
    if title is not None:
        parts.append(f"<h4>{html.escape(title)}</h4>")
    for name, scores in zip(layer_names, imp):
        parts.append(f'<p class="layer"><span class="name">{html.escape(name)}</span>'
                     f"{_highlighted_passage(context, spans, scores, top_k)}</p>")
    parts.append("</div>")
    return "\n".join(parts)
