import numpy as np
import pytest

from lit_rcqa.analysis.roles import (ANSWER as A, CONTEXT as C, OTHER as O, QUESTION as Q, ROLES, RoleAccumulator,
                                     normalize_word, question_terms, record_role_counts, top_role_counts,
                                     word_roles)
from tests.analysis.records import make_record

QUESTION_TEXT = "Which team won the Super Bowl in 2016?"
PASSAGE = "In 2016, the Denver Broncos beat the Carolina Panthers to win Super Bowl 50."
#          0  1     2   3      4       5    6   7        8        9  10  11    12   13
EXPECTED_ROLES = [O, C, C, A, A, C, C, O, O, O, O, Q, Q, O]


def test_normalize_word_and_question_terms():
    assert normalize_word("(2016),") == "2016"
    assert normalize_word("Levi's") == "levi"
    assert normalize_word("U.S.") == "u.s"
    assert normalize_word("--") == ""
    # "which", "the", "in" are scikit-learn stopwords; "won" stays (and does not match "win")
    assert question_terms(QUESTION_TEXT) == {"team", "won", "super", "bowl", "2016"}


def test_word_roles_precedence_answer_over_context_over_question():
    roles = word_roles(PASSAGE.split(), np.array([3, 4]), QUESTION_TEXT, window=2)
    # "2016," is a question word but lies within 2 words of the answer: context wins
    np.testing.assert_array_equal(roles, EXPECTED_ROLES)
    # a question word inside the answer counts as answer; the window is clipped at the passage start
    roles = word_roles(["Super", "Bowl", "a", "b", "Bowl"], np.array([0]), "super bowl", window=2)
    np.testing.assert_array_equal(roles, [A, C, C, O, Q])
    # no answer words: only question / other
    np.testing.assert_array_equal(word_roles(["Bowl", "x"], np.array([], dtype=int), "bowl"), [Q, O])


def test_top_role_counts_on_hand_made_importances():
    roles = np.array(EXPECTED_ROLES)
    imp = np.zeros((2, 14))
    imp[0, [3, 11, 7]] = [0.5, 0.3, 0.2]      # answer, question, other
    imp[1, [1, 4, 12]] = [0.2, 0.5, 0.3]      # context, answer, question
    np.testing.assert_array_equal(top_role_counts(imp, roles, k=3), [[1, 0, 1, 1], [1, 1, 1, 0]])


def test_accumulated_table_in_percent():
    n = len(PASSAGE.split())
    imp0 = np.zeros((2, n))
    imp0[0, [3, 11, 7]] = [0.5, 0.3, 0.2]
    imp0[1, [1, 4, 12]] = [0.2, 0.5, 0.3]
    imp1 = np.zeros((2, n))
    imp1[:, [3, 4, 0]] = [0.5, 0.3, 0.2]      # answer, answer, other in both layers
    recs = [make_record(QUESTION_TEXT, PASSAGE, imp, pred_words=(3, 4)) for imp in (imp0, imp1)]
    np.testing.assert_array_equal(record_role_counts(recs[0], k=3, window=2), [[1, 0, 1, 1], [1, 1, 1, 0]])
    acc = RoleAccumulator(layers=recs[0].layers, k=3, window=2)
    for r in recs:
        acc.add(r)
    table = acc.table()
    assert table.columns == ROLES and table.n_examples == 2
    np.testing.assert_allclose(table.shares, 100 / 6 * np.array([[3, 0, 1, 2], [3, 1, 1, 1]]))
    np.testing.assert_allclose(table.shares.sum(axis=1), 100.0)
    assert set(table.as_dict()) == set(ROLES)
    with pytest.raises(ValueError, match="no examples"):
        RoleAccumulator(layers=["embeddings"]).table()
