"""Word roles per layer: what kind of passage words each layer ranks highest (the MLRC table).

For each layer's top-k passage words (by word-level importance), the share that are
  answer   — words of the model's predicted answer,
  context  — words within `window` words of the answer (either side),
  question — passage words that also occur in the question (question stopwords removed),
  other    — anything else.
Each word gets exactly one role, by precedence answer > context > question > other: a question
word right next to the answer counts as context, and an answer word repeated in the question
counts as answer. Shares are therefore exclusive and sum to 100 % per layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from lit_rcqa.analysis.registry import Analysis, Context, Output, PerRecord, register
from lit_rcqa.analysis.sections import by_layer, layer_rows, series
from lit_rcqa.analysis.words import answer_word_indices, record_words, top_word_indices
from lit_rcqa.attribution.record import AttributionRecord
from lit_rcqa.plots.report import Section

ROLES: tuple[str, ...] = ("answer", "context", "question", "other")
ANSWER, CONTEXT, QUESTION, OTHER = range(4)


def normalize_word(word: str) -> str:
    """Lower-case, strip surrounding punctuation and a possessive 's, for matching words across texts."""
    w = word.lower().strip()
    start, end = 0, len(w)
    while start < end and not w[start].isalnum():
        start += 1
    while end > start and not w[end - 1].isalnum():
        end -= 1
    w = w[start:end]
    for suffix in ("'s", "\u2019s"):
        if w.endswith(suffix):
            w = w[: -len(suffix)]
    return w


def question_terms(question: str) -> set[str]:
    """The question's content words: normalised, scikit-learn's English stopwords removed."""
    terms = {normalize_word(w) for w in question.split()}
    return {t for t in terms if t and t not in ENGLISH_STOP_WORDS}


def word_roles(words: list[str], answer: np.ndarray, question: str, window: int = 5) -> np.ndarray:
    """[W] role code (ANSWER, CONTEXT, QUESTION, OTHER) of each passage word, by the precedence above.

    answer: word indices of the predicted answer (contiguous in practice; the window spans
    min(answer) - window .. max(answer) + window).
    """
    roles = np.full(len(words), OTHER, dtype=np.int64)
    terms = question_terms(question)
    for i, w in enumerate(words):
        if normalize_word(w) in terms:
            roles[i] = QUESTION
    answer = np.asarray(answer, dtype=np.int64)
    if answer.size:
        lo, hi = max(int(answer.min()) - window, 0), int(answer.max()) + window + 1
        roles[lo:hi] = CONTEXT
        roles[answer] = ANSWER
    return roles


def top_role_counts(importance: np.ndarray, roles: np.ndarray, k: int = 5) -> np.ndarray:
    """[n_layers, W] word importances, [W] roles -> [n_layers, 4] counts of roles among each layer's top-k."""
    top = top_word_indices(importance, k)  # [L, min(k, W)]
    counts = np.zeros((top.shape[0], len(ROLES)), dtype=np.int64)
    for layer, idx in enumerate(top):
        counts[layer] = np.bincount(roles[idx], minlength=len(ROLES))
    return counts


def record_role_counts(record: AttributionRecord, k: int = 5, window: int = 5) -> np.ndarray:
    """[n_layers, 4] role counts among each layer's top-k passage words for one record."""
    words = record_words(record)
    roles = word_roles(words.words, answer_word_indices(words, record), record.question, window)
    return top_role_counts(words.importance, roles, k)


@dataclass
class RoleTable:
    layers: list[str]
    shares: np.ndarray                        # [n_layers, 4] percent of top-k words per role
    columns: tuple[str, ...] = ROLES
    n_examples: int = 0

    def as_dict(self) -> dict[str, np.ndarray]:
        """role -> [n_layers] shares in %, the form the layer plots take."""
        return {c: self.shares[:, j] for j, c in enumerate(self.columns)}


@dataclass
class RoleAccumulator:
    """Pools role counts over records (micro-average: every top-k slot of every example weighs the same)."""

    layers: list[str]
    k: int = 5
    window: int = 5
    counts: np.ndarray | None = field(default=None, repr=False)  # [n_layers, 4]
    n_examples: int = 0

    def add_counts(self, counts: np.ndarray) -> None:
        counts = np.asarray(counts, dtype=np.int64)
        if counts.shape != (len(self.layers), len(ROLES)):
            raise ValueError(f"role counts have shape {counts.shape}, expected {(len(self.layers), len(ROLES))}")
        self.counts = counts.copy() if self.counts is None else self.counts + counts
        self.n_examples += 1

    def add(self, record: AttributionRecord) -> None:
        if list(record.layers) != list(self.layers):
            raise ValueError(f"record {record.example_id!r} has layers {record.layers}, expected {self.layers}")
        self.add_counts(record_role_counts(record, self.k, self.window))

    def table(self) -> RoleTable:
        if self.counts is None:
            raise ValueError("no examples were added; cannot compute role shares")
        totals = self.counts.sum(axis=1, keepdims=True)  # [n_layers, 1]
        shares = 100.0 * self.counts / np.maximum(totals, 1)
        return RoleTable(layers=list(self.layers), shares=shares, n_examples=self.n_examples)


# --- the "roles" analysis ----------------------------------------------------------------------------------
class _RolesAnalysis(PerRecord):
    @staticmethod
    def statistic(context: Context):
        return RoleAccumulator(list(context.layers), context.top_k, context.window)

    def finish(self, out) -> Output:
        from lit_rcqa.plots.layers import plot_role_shares

        acc, layers = self.acc, self.acc.layers
        table = acc.table()
        section = Section("Word roles among each layer's top-k words",
                          f"Share (%) of each layer's top-{acc.k} passage words that are the predicted answer, "
                          f"context (within {acc.window} words of it), question words found in the passage, or "
                          "other; each row sums to 100. A rising answer share means the layer closes in on the "
                          "answer.")
        section.figures.append(out.figure("roles", plot_role_shares(table, layers)))
        series(out, "roles", {role: table.shares[:, j] for j, role in enumerate(ROLES)},
               "Word roles among the top-k words", "share of top-k words (%)")
        section.tables.append(out.table("roles", ["layer", *ROLES], layer_rows(layers, *table.shares.T),
                                        meta={"k": acc.k, "window": acc.window, "n_examples": table.n_examples}))
        return Output(section, {role: by_layer(layers, table.shares[:, j]) for j, role in enumerate(ROLES)})


register(Analysis("roles", "share of answer, context, question and other words among each layer's top-k words",
                  _RolesAnalysis))
