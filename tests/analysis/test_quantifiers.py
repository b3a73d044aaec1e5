import math

import numpy as np
import pytest

from lit_rcqa.analysis.quantifiers import (NumericShareAccumulator, is_numerical_word, is_quantifier_question,
                                           numeric_topk_hits, quantifier_summary, record_numeric_hits)
from tests.analysis.records import make_record


@pytest.mark.parametrize("question, expected", [
    ("How many touchdowns were scored?", True),
    ("how MUCH did it cost", True),
    ("So, how  many?", True),
    ("How did they win?", False),
    ("Howmany people?", False),
    ("How large is manyfold?", False),
])
def test_is_quantifier_question(question, expected):
    assert is_quantifier_question(question) is expected


NUMERICAL = ["7", "1,000", "3.5", "$5", "€1,200.50", "45%", "1990s", "1990's", "21st", "2nd", "3rd", "100th",
             "-2", "10:30", "twenty-five", "Twenty-first", "one-third", "1990-2000", "1990\u20132000",
             "one", "Nineteen", "ninety", "hundred", "thousand", "million", "billion", "dozen",
             "half", "third", "quarter", "first", "twelfth", "(1,000),", "50.", "\u201cthree\u201d"]
NOT_NUMERICAL = ["", "--", "the", "Broncos", "30-year", "one-sided", "first-class", "someone", "often", "tenths?",
                 "1,00", "$", "%", "s", "abc123", "3x", "Super", "nth", "hundreds"]


@pytest.mark.parametrize("word", NUMERICAL)
def test_numerical_words_detected(word):
    assert is_numerical_word(word)


@pytest.mark.parametrize("word", NOT_NUMERICAL)
def test_non_numerical_words_rejected(word):
    assert not is_numerical_word(word)


def test_numeric_hits_exclude_answer_words_and_pool_over_records():
    question = "How many points did Denver score?"
    passage = "Denver scored 24 points , Carolina scored ten in the first half ."
    #          0      1      2  3      4 5        6      7   8  9   10    11   12
    n = len(passage.split())
    assert [w for w in passage.split() if is_numerical_word(w)] == ["24", "ten", "first", "half"]
    imp = np.zeros((2, n))
    imp[0, [2, 7, 0, 1, 3, 5]] = [6, 5, 4, 3, 2, 1]      # top-5: 24 (answer), ten, Denver, scored, points
    imp[1, [10, 11, 7, 0, 1]] = [5, 4, 3, 2, 1]           # top-5: first, half, ten, Denver, scored
    rec = make_record(question, passage, imp, pred_words=(2, 2))   # predicted answer: "24"
    hits, n_numeric, n_slots = record_numeric_hits(rec, k=5)
    np.testing.assert_array_equal(hits, [1, 3])
    assert (n_numeric, n_slots) == (3, 5)
    acc = NumericShareAccumulator(layers=rec.layers, k=5)
    acc.add(rec)
    acc.add(make_record(question, "no numbers here at all", np.ones((2, 5)), pred_words=(0, 0)))
    np.testing.assert_allclose(acc.share(), [100 / 3, 100.0])
    np.testing.assert_allclose(acc.topk_share(), [10.0, 30.0])
    assert acc.n_examples == 2
    empty = NumericShareAccumulator(layers=rec.layers)
    with pytest.raises(ValueError, match="no examples"):
        empty.share()
    empty.add(make_record(question, "no numbers", np.ones((2, 2))))
    assert np.isnan(empty.share()).all()


def test_numeric_topk_hits_counts_mask_in_top_k():
    imp = np.array([[0.1, 0.5, 0.4], [0.6, 0.3, 0.1]])
    np.testing.assert_array_equal(numeric_topk_hits(imp, np.array([True, False, True]), k=1), [0, 1])


def test_quantifier_summary_on_hand_made_arrays():
    summary = quantifier_summary([True, False, True, False, False], [1, 0, 0, 1, 1], [0.9, 0.2, 0.3, 0.8, 0.5])
    q, o = summary["quantifier"], summary["other"]
    assert (q.n, o.n) == (2, 3)
    assert q.em == pytest.approx(0.5) and o.em == pytest.approx(2 / 3)
    assert q.confidence_mean == pytest.approx(0.6) and q.confidence_median == pytest.approx(0.6)
    assert o.confidence_mean == pytest.approx(0.5) and o.confidence_median == pytest.approx(0.5)
    only_other = quantifier_summary([False], [1], [0.4])
    assert only_other["quantifier"].n == 0 and math.isnan(only_other["quantifier"].em)
    with pytest.raises(ValueError, match="one length"):
        quantifier_summary([True], [1, 0], [0.5])
