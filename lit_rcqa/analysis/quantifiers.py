"""Quantifier questions ("how many" / "how much"): do layers look at the passage's numbers?

The paper found numerical words (POS tag CD) other than the answer climbing into the top-5 of
later layers on quantifier questions. We detect numerical words with a rule-based detector that
stands in for a POS tagger's CD tag (no tagger with a bundled model is installed here); its rules
are listed on `is_numerical_word` and tested. Unlike PTB's CD it also counts ordinals and
fractions ("first", "21st", "half"), as the issue asks, and it knows no Roman numerals.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from lit_rcqa.analysis.registry import Analysis, Context, Item, Output, register
from lit_rcqa.analysis.rows import RowBuffer
from lit_rcqa.analysis.sections import by_layer, layer_rows, series
from lit_rcqa.analysis.words import answer_word_indices, record_words, top_word_indices
from lit_rcqa.attribution.record import AttributionRecord
from lit_rcqa.evaluation.metrics import exact_match_score, max_over_golds
from lit_rcqa.plots.report import Section

_QUANTIFIER = re.compile(r"\bhow\s+(many|much)\b", re.IGNORECASE)

_UNITS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
         "sixteen seventeen eighteen nineteen".split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = "hundred thousand million billion trillion dozen".split()
_FRACTIONS = "half third quarter".split()
_ORDINALS = ("first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth "
             "fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth thirtieth fortieth "
             "fiftieth sixtieth seventieth eightieth ninetieth hundredth thousandth millionth billionth").split()
NUMBER_WORDS = frozenset(_UNITS + _TENS + _SCALES + _FRACTIONS + _ORDINALS)

# optional currency, optional sign, digits with optional thousands commas, optional decimals,
# optional suffix: percent, decade (1990s, 1990's), ordinal (21st, 2nd, 3rd, 4th); or a time 10:30.
_DIGITS = re.compile(r"[$€£¥]?[+\-\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+|(?=\.\d))(?:\.\d+)?(?:%|s|'s|st|nd|rd|th)?"
                     r"|\d{1,2}:\d{2}")
_EDGE = "\"'()[]{}<>.,;:!?\u201c\u201d\u2018\u2019"


def is_quantifier_question(question: str) -> bool:
    """True for "how many" / "how much" questions (any case, any whitespace between the two words)."""
    return bool(_QUANTIFIER.search(question))


def is_numerical_word(word: str) -> bool:
    """Rule-based stand-in for POS tag CD. A word (surrounding punctuation ignored, any case) is numerical if
    - it is digits: "7", "1,000", "3.5", ".5", "-2", "$5", "€1,200.50", "45%", "1990s", "1990's", "10:30";
    - it is a numeric ordinal: "1st", "2nd", "3rd", "21st", "100th";
    - it is a number word: zero … nineteen, twenty … ninety, hundred, thousand, million, billion,
      trillion, dozen; a fraction: half, third, quarter; an ordinal word: first … nineteenth,
      twentieth … ninetieth, hundredth, thousandth, millionth, billionth;
    - it is hyphenated (or en-dashed) and every part is numerical: "twenty-five", "twenty-first",
      "one-third", "1990-2000". "30-year" and "one-sided" are not.
    """
    w = word.strip().strip(_EDGE).lower()
    if not w:
        return False
    if _DIGITS.fullmatch(w) or w in NUMBER_WORDS:
        return True
    parts = re.split(r"[-\u2013]", w)
    return len(parts) > 1 and all(p and (_DIGITS.fullmatch(p) or p in NUMBER_WORDS) for p in parts)


def numeric_topk_hits(importance: np.ndarray, numeric: np.ndarray, k: int = 5) -> np.ndarray:
    """[n_layers, W] importances, [W] bool mask of the words to count -> [n_layers] how many are in the top-k."""
    top = top_word_indices(importance, k)  # [L, min(k, W)]
    return np.asarray(numeric, dtype=bool)[top].sum(axis=1)


def record_numeric_hits(record: AttributionRecord, k: int = 5) -> tuple[np.ndarray, int, int]:
    """For one record: ([n_layers] numerical non-answer words in each layer's top-k, how many such words the
    passage has, how many top-k slots there are)."""
    words = record_words(record)
    numeric = np.array([is_numerical_word(w) for w in words.words], dtype=bool)
    numeric[answer_word_indices(words, record)] = False
    return numeric_topk_hits(words.importance, numeric, k), int(numeric.sum()), min(k, len(words.words))


@dataclass
class NumericShareAccumulator:
    """Pools, over (quantifier) records, the numerical non-answer words that reach each layer's top-k.

    `share()` is the issue's measure: of all the passages' numerical words other than the answer's,
    the percentage in the layer's top-k; `topk_share()` is the percentage of top-k slots they take.
    Feed it only the questions you want measured (e.g. `is_quantifier_question(record.question)`).
    """

    layers: list[str]
    k: int = 5
    hits: np.ndarray | None = field(default=None, repr=False)  # [n_layers]
    n_numeric: int = 0
    n_slots: int = 0
    n_examples: int = 0

    def add(self, record: AttributionRecord) -> None:
        if list(record.layers) != list(self.layers):
            raise ValueError(f"record {record.example_id!r} has layers {record.layers}, expected {self.layers}")
        hits, n_numeric, n_slots = record_numeric_hits(record, self.k)
        self.hits = hits.copy() if self.hits is None else self.hits + hits
        self.n_numeric += n_numeric
        self.n_slots += n_slots
        self.n_examples += 1

    def share(self) -> np.ndarray:
        """[n_layers] percent of numerical non-answer words that are in the top-k (NaN if there were none)."""
        return self._percent(self.n_numeric)

    def topk_share(self) -> np.ndarray:
        """[n_layers] percent of top-k slots taken by numerical non-answer words."""
        return self._percent(self.n_slots)

    def _percent(self, denominator: int) -> np.ndarray:
        if self.hits is None:
            raise ValueError("no examples were added; cannot compute numerical-word shares")
        return np.full(len(self.layers), np.nan) if denominator == 0 else 100.0 * self.hits / denominator


@dataclass(frozen=True)
class GroupSummary:
    n: int
    em: float                   # mean of the EM values given (same units as the input: 0/1 or 0/100)
    confidence_mean: float
    confidence_median: float


def quantifier_summary(is_quantifier, em, confidence) -> dict[str, GroupSummary]:
    """EM and mean / median confidence of quantifier vs other questions; NaN for an empty group."""
    q = np.asarray(is_quantifier, dtype=bool)
    em = np.asarray(em, dtype=np.float64)
    confidence = np.asarray(confidence, dtype=np.float64)
    if not (q.shape == em.shape == confidence.shape) or q.ndim != 1:
        raise ValueError(f"expected three 1-d arrays of one length; got {q.shape}, {em.shape}, {confidence.shape}")
    out = {}
    for name, mask in (("quantifier", q), ("other", ~q)):
        n = int(mask.sum())
        out[name] = GroupSummary(
            n=n, em=float(em[mask].mean()) if n else float("nan"),
            confidence_mean=float(confidence[mask].mean()) if n else float("nan"),
            confidence_median=float(np.median(confidence[mask])) if n else float("nan"))
    return out


class OutcomeAccumulator:
    """Per question (quantifier or not, EM, confidence) for `quantifier_summary`.

    The confidence median needs every value, so each question is one float64 row of three numbers in a
    `RowBuffer` (24 bytes), never a Python tuple per question.
    """

    def __init__(self):
        self.rows = RowBuffer(3)  # [n_questions, 3]: is quantifier (0/1), EM, confidence

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, is_quantifier: bool, em: float, confidence: float) -> None:
        self.rows.append((float(bool(is_quantifier)), em, confidence))

    def summary(self) -> dict[str, GroupSummary]:
        rows = self.rows.array()
        return quantifier_summary(rows[:, 0] > 0, rows[:, 1], rows[:, 2])


# --- the "quantifiers" analysis ----------------------------------------------------------------------------
class _QuantifiersAnalysis:
    def __init__(self, context: Context):
        self.layers = list(context.layers)
        self.k = context.top_k
        self.numeric = {group: NumericShareAccumulator(self.layers, self.k) for group in ("quantifier", "other")}
        self.outcomes = OutcomeAccumulator()   # (is quantifier, EM %, confidence) per question
        self.n_nbest = 0                       # questions whose confidence is the n-best probability

    def add(self, item: Item) -> None:
        record = item.record
        quantifier = is_quantifier_question(record.question)
        self.numeric["quantifier" if quantifier else "other"].add(record)
        em = 100.0 * max_over_golds(exact_match_score, record.pred_text, list(record.gold_texts))
        self.outcomes.add(quantifier, em, item.confidence)
        self.n_nbest += item.nbest

    def finish(self, out) -> Output:
        from lit_rcqa.plots.layers import plot_layer_series

        layers, n = self.layers, len(self.outcomes)
        section = Section("Quantifier questions (how many / how much)",
                          f"Share (%) of the passage's numerical words (other than the answer's) that reach each "
                          f"layer's top-{self.k}, on quantifier questions and, for reference, on the others. The "
                          "second table compares exact match and confidence of the two groups.")
        shares = {}
        for group, acc in self.numeric.items():
            if acc.n_examples:
                shares[group] = (acc.share(), acc.topk_share())
            else:
                section.notes.append(f"no {group} questions among the {n} examples")
                shares[group] = (np.full(len(layers), np.nan),) * 2
        lines = {f"{g} questions": s[0] for g, s in shares.items()}
        title, y = "Numerical non-answer words reaching the top-k", "numerical words in top-k (%)"
        section.figures.append(out.figure("quantifiers", plot_layer_series(lines, layers, y, title)))
        series(out, "quantifiers", lines, title, y)
        q, o = shares["quantifier"], shares["other"]
        section.tables.append(out.table(
            "quantifiers", ["layer", "quantifier_share", "quantifier_topk_share", "other_share", "other_topk_share"],
            layer_rows(layers, q[0], q[1], o[0], o[1]),
            meta={"k": self.k, "n_quantifier": self.numeric["quantifier"].n_examples,
                  "n_other": self.numeric["other"].n_examples, "detector": "rule-based (CD stand-in)"}))
        groups = self.outcomes.summary()
        rows = [[g, s.n, s.em, s.confidence_mean, s.confidence_median] for g, s in groups.items()]
        section.tables.append(out.table("quantifier_summary",
                                        ["group", "n", "em", "confidence_mean", "confidence_median"], rows))
        out.tracker.bar(f"{out.prefix}/quantifier_em", list(groups), [s.em for s in groups.values()],
                        "Exact match: quantifier questions and the others", "exact match (%)")
        headline = {"numeric_share": by_layer(layers, q[0]), "numeric_share_other": by_layer(layers, o[0]),
                    **{g: {"n": s.n, "em": s.em, "confidence_mean": s.confidence_mean,
                           "confidence_median": s.confidence_median} for g, s in groups.items()}}
        notes = []
        if 0 < self.n_nbest < n:
            notes.append(f"{n - self.n_nbest} examples had no n-best probability; their confidence is the softmax "
                         "start × end probability of the predicted span")
        return Output(section, headline, notes)


register(Analysis("quantifiers", "numerical words in the top-k on how-many/how-much questions; EM and confidence",
                  _QuantifiersAnalysis))
