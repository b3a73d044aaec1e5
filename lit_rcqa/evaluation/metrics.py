"""Exact match and F1 exactly as the official SQuAD scripts define them, as functions and as metrics.

Functions: `normalize_answer`, `exact_match_score`, `f1_score`, `max_over_golds`, and
`question_scores`, one question's (EM, F1) under the rules of evaluate-v1.1.py or evaluate-v2.0.py.
The two differ only where an answer normalises to nothing: v2.0 drops such golds (".") before
scoring (`v2_golds`) and gives F1 = EM when a side is empty; v1.1 keeps them. An empty gold list (an
unanswerable question) is scored against [""] in both.

Metrics (torchmetrics, correct under DDP): `SquadExactMatch`, `SquadF1`, `SquadMetrics`. Every state
is a sum, so syncing ranks is a plain sum. The F1 sum is kept in fixed point (int64 units of
2**-40 per example): integer addition is associative, so the synced value is bit-identical to a
single-process run however the examples are split (a float sum would depend on the order); the
rounding is at most 2**-41 per example, far below the 1e-9 the official numbers are checked to.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Callable, Sequence

import torch
from torchmetrics import Metric

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_F1_SCALE = 2**40  # fixed-point units of one example's F1


def normalize_answer(s: str) -> str:
    """Lower-case, drop punctuation, drop the articles a/an/the, collapse whitespace (official order)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match_score(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str, *, version_2: bool = False) -> float:
    """Token-level F1 of the normalised answers.

    The two official scripts differ only when a side normalises to nothing (e.g. the gold "."):
    evaluate-v1.1.py gives 0 (no overlap), evaluate-v2.0.py gives F1 = EM (no-answer handling).
    """
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if version_2 and (not pred_tokens or not gold_tokens):
        return float(pred_tokens == gold_tokens)
    num_same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def max_over_golds(metric_fn: Callable[[str, str], float], prediction: str, golds: Sequence[str]) -> float:
    """Best score over the gold answers; no gold answers (unanswerable) means the gold is ""."""
    return max(metric_fn(prediction, gold) for gold in (golds or [""]))


def v2_golds(golds: Sequence[str]) -> list[str]:
    """The golds evaluate-v2.0.py scores against: those that normalise to nothing (such as ".") are
    dropped, and a question left with none (unanswerable, or only such golds) has the gold ""."""
    return [gold for gold in golds if normalize_answer(gold)] or [""]


def question_scores(prediction: str, golds: Sequence[str], *, version_2: bool = False) -> tuple[float, float]:
    """(exact match, F1) of one question in [0, 1], as the official script of that version scores it:
    v1.1 keeps every gold (a gold "." equals the empty prediction for EM); v2.0 drops empty golds first."""
    if version_2:
        golds = v2_golds(golds)
    exact = max_over_golds(exact_match_score, prediction, golds)
    f1 = max_over_golds(lambda p, g: f1_score(p, g, version_2=version_2), prediction, golds)
    return exact, f1


GROUPS = (("HasAns_", True), ("NoAns_", False))  # evaluate-v2.0.py's split: by whether the golds have an answer


def score_block(prefix: str, exact_sum, f1_sum, total, *, exact_key: str = "exact") -> dict:
    """`<prefix>exact`, `<prefix>f1` (means in percent) and `<prefix>total`, as evaluate-v2.0.py's make_eval_dict
    names them. Plain numbers, or the metrics' tensor states (then a total of 0 gives 0, not a division by zero)."""
    if isinstance(total, torch.Tensor):
        n, total = total.clamp(min=1).to(torch.float64), total.clone()
    else:
        n = total
    return {f"{prefix}{exact_key}": 100.0 * exact_sum / n, f"{prefix}f1": 100.0 * f1_sum / n, f"{prefix}total": total}


def v2_eval_dict(exact: Sequence[float], f1: Sequence[float], has_ans: Sequence[bool]) -> dict:
    """evaluate-v2.0.py's totals over the questions given: every question, then the HasAns_ and NoAns_ groups
    that have any. Each sum is taken in the given order, as the script's (so the floats are the script's)."""
    result = score_block("", sum(exact), sum(f1), len(exact))
    for prefix, wanted in GROUPS:
        rows = [i for i, h in enumerate(has_ans) if h is wanted]
        if rows:
            result.update(score_block(prefix, sum(exact[i] for i in rows), sum(f1[i] for i in rows), len(rows)))
    return result


def _check_inputs(preds: Sequence[str], golds: Sequence[Sequence[str]]) -> None:
    if isinstance(preds, str) or len(preds) != len(golds):
        raise ValueError(f"need one prediction string per gold list, got {len(preds)} predictions for {len(golds)}")


class _SquadMetric(Metric):
    full_state_update = False  # updates are independent: no need to recompute over the full state
    is_differentiable = False
    higher_is_better = True

    def __init__(self, version_2: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.version_2 = version_2  # which official script's rules for empty answers (see question_scores)

    def _scores(self, preds: Sequence[str], golds: Sequence[Sequence[str]]) -> list[tuple[float, float]]:
        _check_inputs(preds, golds)
        return [question_scores(p, g, version_2=self.version_2) for p, g in zip(preds, golds)]


class SquadExactMatch(_SquadMetric):
    """Percent of examples whose prediction equals a gold answer after normalisation."""

    def __init__(self, version_2: bool = False, **kwargs):
        super().__init__(version_2, **kwargs)
        self.add_state("correct", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: Sequence[str], golds: Sequence[Sequence[str]]) -> None:
        self.correct += sum(exact for exact, _ in self._scores(preds, golds))
        self.total += len(preds)

    def compute(self) -> torch.Tensor:
        return 100.0 * self.correct / self.total.clamp(min=1)


class SquadF1(_SquadMetric):
    """Mean over examples of the best token F1 against the gold answers, in percent."""

    def __init__(self, version_2: bool = False, **kwargs):
        super().__init__(version_2, **kwargs)
        self.add_state("f1_fixed", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: Sequence[str], golds: Sequence[Sequence[str]]) -> None:
        self.f1_fixed += sum(_fixed(f1) for _, f1 in self._scores(preds, golds))
        self.total += len(preds)

    def compute(self) -> torch.Tensor:
        return 100.0 * _unfixed(self.f1_fixed) / self.total.clamp(min=1)


class SquadMetrics(_SquadMetric):
    """{exact_match, f1, total}, plus the HasAns_/NoAns_ split (as evaluate-v2.0.py) when some
    example has no gold answer."""

    _GROUPS = ("has_ans", "no_ans")

    def __init__(self, version_2: bool = False, **kwargs):
        super().__init__(version_2, **kwargs)
        for group in self._GROUPS:  # overall numbers are the sums of the two groups
            self.add_state(f"{group}_exact", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{group}_f1_fixed", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
            self.add_state(f"{group}_total", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: Sequence[str], golds: Sequence[Sequence[str]]) -> None:
        sums = {group: [0.0, 0, 0] for group in self._GROUPS}
        for gold, (exact, f1) in zip(golds, self._scores(preds, golds)):
            acc = sums["has_ans" if gold else "no_ans"]  # as evaluate-v2.0.py: by the golds before dropping
            acc[0] += exact
            acc[1] += _fixed(f1)
            acc[2] += 1
        for group, (exact, f1_fixed, total) in sums.items():
            setattr(self, f"{group}_exact", getattr(self, f"{group}_exact") + exact)
            setattr(self, f"{group}_f1_fixed", getattr(self, f"{group}_f1_fixed") + f1_fixed)
            setattr(self, f"{group}_total", getattr(self, f"{group}_total") + total)

    def compute(self) -> dict[str, torch.Tensor]:
        exact = self.has_ans_exact + self.no_ans_exact
        f1_fixed = self.has_ans_f1_fixed + self.no_ans_f1_fixed
        total = self.has_ans_total + self.no_ans_total
        out = score_block("", exact, _unfixed(f1_fixed), total, exact_key="exact_match")
        if self.no_ans_total > 0:  # the split only where there is one (a v1.1 set has no unanswerable question)
            for prefix, has_ans in GROUPS:
                group = "has_ans" if has_ans else "no_ans"
                if getattr(self, f"{group}_total") > 0:
                    out.update(score_block(prefix, getattr(self, f"{group}_exact"),
                                           _unfixed(getattr(self, f"{group}_f1_fixed")),
                                           getattr(self, f"{group}_total")))
        return out


def _fixed(score: float) -> int:
    return round(score * _F1_SCALE)


def _unfixed(value: torch.Tensor) -> torch.Tensor:
    return value.to(torch.float64) / _F1_SCALE
