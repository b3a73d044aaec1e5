"""One row per analysed example: what the model answered, how right it was, and what each layer looked at.

The table a researcher filters (wrong answers, low confidence, a layer whose decision flips) and then reads:
per layer, the completeness gap δ, whether zeroing the layer's top-1 token changed the answer, and the
layer's top-k passage words. Values come straight from the stored record (and the flips run on it).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from lit_rcqa.analysis.flips import FlipResult
from lit_rcqa.analysis.registry import Analysis, Context, Item, Output, register
from lit_rcqa.analysis.words import PassageWords, top_word_indices
from lit_rcqa.attribution.record import AttributionRecord
from lit_rcqa.evaluation.metrics import exact_match_score, f1_score, max_over_golds

GOLD_SEPARATOR = " | "
WORD_SEPARATOR = ", "


def example_columns(layers: Sequence[str]) -> list[str]:
    return ["id", "question", "prediction", "gold", "em", "f1", "confidence",
            *(f"completeness_gap/{name}" for name in layers), *(f"flip/{name}" for name in layers),
            *(f"top_words/{name}" for name in layers)]


def example_row(record: AttributionRecord, words: PassageWords, confidence: float, top_k: int,
                flips: FlipResult | None = None) -> list[Any]:
    """The row of `example_columns(record.layers)`: EM/F1 in % (best over the golds, SQuAD v1.1 rules),
    δ per layer (None where undefined), the top-1 flip per layer (None where flips did not run), the
    layer's top-k passage words, most important first."""
    golds = list(record.gold_texts)
    em = 100.0 * max_over_golds(exact_match_score, record.pred_text, golds)
    f1 = 100.0 * max_over_golds(f1_score, record.pred_text, golds)
    deltas = [None if not np.isfinite(d) else float(d) for d in np.asarray(record.delta, dtype=np.float64)]
    flipped = [None] * len(record.layers) if flips is None else [bool(f) for f in flips.top1_flipped]
    if len(words.words):
        top = top_word_indices(words.importance, top_k)  # [n_layers, k]
        top_words = [WORD_SEPARATOR.join(words.words[int(w)] for w in row) for row in top]
    else:
        top_words = [""] * len(record.layers)
    return [record.example_id, record.question, record.pred_text, GOLD_SEPARATOR.join(golds), em, f1,
            float(confidence), *deltas, *flipped, *top_words]


# --- always on: the examples table -------------------------------------------------------------------------
class _ExamplesTable:
    def __init__(self, context: Context):
        self.columns, self.k = example_columns(context.layers), context.top_k
        self.rows: list[list] = []  # one short row per record

    def add(self, item: Item) -> None:
        self.rows.append(example_row(item.record, item.words, item.confidence, self.k, item.flips))

    def finish(self, out) -> Output:
        out.table("examples", self.columns, self.rows,
                  meta={"top_k": self.k, "em_f1": "best over the gold answers, SQuAD v1.1 rules, in %",
                        "flip": "zeroing the layer's top-1 passage token changed the predicted span (null: not run)",
                        "gold": "gold answers joined by ' | '"})
        return Output()


register(Analysis("examples", "one row per analysed example", _ExamplesTable, always=True))
