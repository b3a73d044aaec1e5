"""t-SNE of one layer's hidden states, with each token's category for colouring (the paper's Fig. 3).

The paper projects every token of an example with t-SNE (perplexity 40) per layer and colours the
answer span, the question, the answer's sentence and the special tokens, to show the answer and
its context separating from the rest in later layers.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from lit_rcqa.analysis.registry import Analysis, Context, Item, Output, register
from lit_rcqa.analysis.sections import safe_name
from lit_rcqa.attribution.record import AttributionRecord
from lit_rcqa.plots.report import Section

CATEGORIES: tuple[str, ...] = ("answer", "question", "context", "special", "other")
SPECIAL_TOKENS = frozenset({"[CLS]", "[SEP]", "[PAD]", "[MASK]", "<s>", "</s>", "<pad>", "<mask>", "<cls>",
                            "<sep>"})
EXACT_TSNE_MAX_POINTS = 1024  # beyond this exact t-SNE's O(n^2) time and memory grow too fast: Barnes-Hut
# a sentence ends at . ! or ? (optionally followed by closing quotes/brackets) plus whitespace, or at a newline
_SENTENCE_END = re.compile(r"[.!?][\"'\u201d\u2019)\]]*\s+|\n+")


def clip_perplexity(perplexity: float, n_points: int) -> float:
    """Perplexity usable for n points: at most (n - 1) / 3, as t-SNE looks at ~3·perplexity neighbours
    (and scikit-learn requires perplexity < n); never below 1."""
    return float(min(perplexity, max((n_points - 1) / 3.0, 1.0)))


def tsne_points(hidden: np.ndarray, perplexity: float = 40.0, random_state: int = 0) -> np.ndarray:
    """[T, H] hidden states of one layer -> [T, 2] t-SNE coordinates (deterministic for a fixed seed)."""
    from sklearn.manifold import TSNE  # imported lazily: only this analysis needs it

    hidden = np.asarray(hidden, dtype=np.float64)
    if hidden.ndim != 2:
        raise ValueError(f"expected hidden states of shape [T, H], got {hidden.shape}")
    if len(hidden) < 2:
        return np.zeros((len(hidden), 2))
    # exact gradients for inputs of one window (<= a few hundred tokens): measured here 3-15x faster than
    # Barnes-Hut at 20-384 points (4 s vs 61 s at 200), and exact rather than approximate
    method = "exact" if len(hidden) <= EXACT_TSNE_MAX_POINTS else "barnes_hut"
    tsne = TSNE(n_components=2, perplexity=clip_perplexity(perplexity, len(hidden)), init="pca",
                learning_rate="auto", random_state=random_state, method=method)
    return tsne.fit_transform(hidden)


def sentence_span(context: str, start: int, end: int) -> tuple[int, int]:
    """Char span of the sentence(s) containing context[start:end], by a simple punctuation splitter."""
    bounds = [m.end() for m in _SENTENCE_END.finditer(context)]
    lo = max((b for b in bounds if b <= start), default=0)
    hi = min((b for b in bounds if b >= end), default=len(context))
    return lo, hi


def token_categories(tokens: list[str], offsets: np.ndarray, context: str, passage_start: int,
                     pred_start: int, pred_end: int, special_tokens=SPECIAL_TOKENS) -> list[str]:
    """[T] category per token, in precedence special > answer > question > context > other.

    answer: tokens pred_start..pred_end (inclusive); question: non-special tokens before the passage;
    context: passage tokens overlapping the sentence that contains the predicted answer.
    """
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)  # [T, 2]
    cats = ["other"] * len(tokens)
    sentence = None
    if 0 <= pred_start <= pred_end < len(tokens) and offsets[pred_start, 0] >= 0 and offsets[pred_end, 1] >= 0:
        sentence = sentence_span(context, int(offsets[pred_start, 0]), int(offsets[pred_end, 1]))
    for i, tok in enumerate(tokens):
        s, e = offsets[i]
        if tok in special_tokens:
            cats[i] = "special"
        elif pred_start <= i <= pred_end:
            cats[i] = "answer"
        elif i < passage_start:
            cats[i] = "question"
        elif sentence is not None and s >= 0 and s < sentence[1] and e > sentence[0]:
            cats[i] = "context"
    return cats


def record_categories(record: AttributionRecord, special_tokens=SPECIAL_TOKENS) -> list[str]:
    """[T] category of each of the record's tokens."""
    return token_categories(record.tokens, record.offsets, record.context, record.passage_start,
                            record.pred_start, record.pred_end, special_tokens)


def hidden_rows(hidden: np.ndarray, scored: Sequence[str], wanted: Sequence[str], n_tokens: int) -> np.ndarray | None:
    """[n, T', H] stored hidden states -> [len(wanted), n_tokens, H], or None when they do not cover them.

    The store keeps either one row per scored layer (n == len(scored)) or one per model layer 0 … L.
    """
    h = np.asarray(hidden)
    if h.ndim != 3 or h.shape[1] < n_tokens:
        return None
    if h.shape[0] == len(scored):
        rows = [list(scored).index(name) for name in wanted]
    else:
        rows = [0 if name == "embeddings" else int(name.rsplit("_", 1)[1]) for name in wanted]
        if max(rows) >= h.shape[0]:
            return None
    return h[rows, :n_tokens]


# --- the "tsne" analysis: the first few examples with stored hidden states ----------------------------------
TSNE_PERPLEXITY = 40.0     # the paper's


class _TSNEAnalysis:
    def __init__(self, context: Context):
        self.layers = list(context.layers)
        self.hidden, self.limit, self.progress = context.hidden, context.tsne_examples, context.progress
        self.jobs: list[tuple[AttributionRecord, np.ndarray]] = []  # the shown examples, kept whole

    def add(self, item: Item) -> None:
        if len(self.jobs) >= self.limit or self.hidden is None:
            return
        record = item.record
        h = self.hidden.get(record.example_id)
        h = None if h is None else hidden_rows(h, item.scored, record.layers, len(record.tokens))
        if h is not None:
            self.jobs.append((record, h))

    def finish(self, out) -> Output:
        from tqdm.auto import tqdm

        from lit_rcqa.plots.tsne import plot_tsne, plot_tsne_grid

        section = Section("t-SNE of the hidden states",
                          f"Each point is one token of one example at one layer, projected to 2-D by t-SNE "
                          f"(perplexity {TSNE_PERPLEXITY:g}, clipped for short inputs): red the predicted answer, "
                          "blue the question, green the answer's sentence, black the special tokens. Answer tokens "
                          "drifting apart from the rest in later layers means those layers have singled out the "
                          "answer.")
        if not self.jobs:
            section.notes.append("skipped: no stored hidden states for the analysed examples")
            return Output(section)
        for record, hidden in tqdm(self.jobs, disable=not self.progress, desc="t-SNE", unit="ex"):
            cats, stem = record_categories(record), "tsne_" + safe_name(record.example_id)
            panels = []
            for name, h in zip(self.layers, hidden):  # h: [T, H]
                points = tsne_points(h, TSNE_PERPLEXITY)  # [T, 2]
                panels.append((points, cats, record.tokens))
                # one key per example, one frame per layer: the tracker's slider walks the layers
                section.figures.append(out.figure(f"{stem}_{name}", plot_tsne(points, cats, record.tokens,
                                                                             f"{record.example_id} — {name}"),
                                                  key=f"tsne/{safe_name(record.example_id)}", layer=name))
            section.figures.append(out.figure(f"{stem}_grid", plot_tsne_grid(panels, self.layers),
                                              f"{record.example_id}, all layers"))
        return Output(section, {"examples": len(self.jobs)})


register(Analysis("tsne", "t-SNE of each layer's hidden states for the first examples with stored hidden states",
                  _TSNEAnalysis))
