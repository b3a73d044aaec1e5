"""Span post-processing: per-feature start/end logits -> answer text and n-best list per example.

Pure functions (nothing is written or logged). The steps, per example:
(1) in each of its features, pair the top `n_best` starts with the top `n_best` ends; (2) keep pairs
inside the context, end >= start, at most `max_answer_length` tokens, whose start token is scored
in this window (max-context rule); (3) rank by start_logit + end_logit, cut the text from the
original context by character offsets; (4) v2: compare with the null (CLS) score; (5) softmax
probabilities over the n-best.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # annotations only: the settings stay importable without torch (lit_rcqa.predict)
    from lit_rcqa.data.example import QAExample
    from lit_rcqa.data.features import Features


@dataclass(frozen=True)
class NBestEntry:
    text: str
    probability: float  # softmax over the n-best scores (start_logit + end_logit) of this example
    start_logit: float
    end_logit: float
    feature_index: int  # -1 for the empty fallback entry
    start_token: int  # token positions in that feature (the CLS position for the null entry)
    end_token: int
    start_char: int  # [start_char, end_char) in the example's context; -1 for an empty entry
    end_char: int


@dataclass(frozen=True)
class PostprocessSettings:
    """How logits become answers; one object for training (QAModule), prediction, IG and the analyses.

    Args:
        n_best: Start and end candidates kept per window, and entries kept per example.
        max_answer_length: Longest answer span, in tokens.
        version_2: SQuAD v2: allow the empty (no-answer) prediction.
        null_threshold: v2: predict no answer when the null score beats the best span's by more than this.
    """

    n_best: int = 20
    max_answer_length: int = 30
    version_2: bool = False
    null_threshold: float = 0.0


DEFAULT_POSTPROCESS = PostprocessSettings()

# One scored candidate before texts and probabilities: (score, start_logit, end_logit, feature, start, end).
_Candidate = tuple[float, float, float, int, int, int]


def postprocess_predictions(
    examples: Sequence[QAExample],
    features: Features,
    start_logits: Sequence[Sequence[float]],
    end_logits: Sequence[Sequence[float]],
    *,
    n_best: int = DEFAULT_POSTPROCESS.n_best,
    max_answer_length: int = DEFAULT_POSTPROCESS.max_answer_length,
    version_2: bool = DEFAULT_POSTPROCESS.version_2,
    null_threshold: float = DEFAULT_POSTPROCESS.null_threshold,
) -> tuple[dict[str, str], dict[str, list[NBestEntry]]]:
    """Best answer text and n-best list per example id.

    `start_logits[i]` / `end_logits[i]` belong to feature i; they may be padded (only the first
    len(features.input_ids[i]) values are read). v2: "" is predicted when the smallest null score
    over the example's features beats the best span by more than `null_threshold`. With a
    `PostprocessSettings`: `postprocess_predictions(..., **dataclasses.asdict(settings))`.
    """
    if len(start_logits) != len(features) or len(end_logits) != len(features):
        raise ValueError(f"got logits for {len(start_logits)}/{len(end_logits)} features, expected {len(features)}")
    by_example: list[list[int]] = [[] for _ in examples]
    for f, e in enumerate(features.example_index):
        by_example[e].append(f)

    predictions: dict[str, str] = {}
    nbest: dict[str, list[NBestEntry]] = {}
    for e, example in enumerate(examples):
        candidates: list[_Candidate] = []
        null: _Candidate | None = None
        for f in by_example[e]:
            n = len(features.input_ids[f])
            start = np.asarray(start_logits[f], dtype=np.float64)[:n]  # [T]
            end = np.asarray(end_logits[f], dtype=np.float64)[:n]  # [T]
            candidates += _feature_candidates(features, f, start, end, n_best, max_answer_length)
            cls = features.cls_index[f]
            score = start[cls] + end[cls]
            if null is None or score < null[0]:
                null = (float(score), float(start[cls]), float(end[cls]), f, cls, cls)
        # Highest score first; ties broken by (feature, start, end), the null entry after equal spans.
        candidates.sort(key=lambda c: (-c[0], c[3], c[4], c[5]))
        spans = candidates[:n_best]
        ranked = [(c, False) for c in spans]  # (candidate, is the null entry)
        if version_2 and null is not None:
            position = sum(1 for c in spans if c[0] >= null[0])
            ranked.insert(position, (null, True))
            if len(ranked) > n_best:  # drop the last span, never the null entry
                ranked = ranked[:n_best] if position < n_best else ranked[:n_best - 1] + ranked[-1:]
        if ranked:
            probs = _softmax([c[0] for c, _ in ranked])
            nbest[example.id] = [_entry(example, features, c, p, is_null) for (c, is_null), p in zip(ranked, probs)]
        else:  # no valid span in any window of this example
            nbest[example.id] = [NBestEntry("", 1.0, 0.0, 0.0, -1, -1, -1, -1, -1)]

        null_wins = version_2 and null is not None and spans and null[0] - spans[0][0] > null_threshold
        predictions[example.id] = "" if not spans or null_wins else _entry(example, features, spans[0], 0.0).text
    return predictions, nbest


def _feature_candidates(features: Features, f: int, start: np.ndarray, end: np.ndarray, n_best: int,
                        max_answer_length: int) -> list[_Candidate]:
    """The best `n_best` valid (start, end) pairs among the top `n_best` starts x ends of feature f."""
    offsets = features.offsets[f]
    max_ctx = features.token_is_max_context[f]
    starts = [i for i in _top_k(start, n_best).tolist() if offsets[i] is not None and max_ctx[i]]
    ends = [i for i in _top_k(end, n_best).tolist() if offsets[i] is not None]
    s_val, e_val = start.tolist(), end.tolist()
    pairs = [(s_val[s] + e_val[e], s_val[s], e_val[e], f, s, e)
             for s in starts for e in ends if s <= e < s + max_answer_length]
    pairs.sort(key=lambda c: (-c[0], c[4], c[5]))  # by score, then start, then end
    return pairs[:n_best]


def _top_k(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, largest first; equal values by position (stable)."""
    return np.argsort(-x, kind="stable")[:k]


def _entry(example: QAExample, features: Features, c: _Candidate, probability: float,
           is_null: bool = False) -> NBestEntry:
    _, s_logit, e_logit, f, s, e = c
    if is_null:
        return NBestEntry("", probability, s_logit, e_logit, f, s, e, -1, -1)
    start_char = features.offsets[f][s][0]
    end_char = features.offsets[f][e][1]
    return NBestEntry(example.context[start_char:end_char], probability, s_logit, e_logit, f, s, e,
                      start_char, end_char)


def _softmax(scores: list[float]) -> list[float]:
    x = np.asarray(scores, dtype=np.float64)
    x = np.exp(x - x.max())
    return (x / x.sum()).tolist()
