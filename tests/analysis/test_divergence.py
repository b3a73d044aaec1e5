import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from lit_rcqa.analysis.divergence import (JSDAccumulator, jensen_shannon, keep_topk, layer_jsd_matrix,
                                          mean_jsd_matrix, normalize, pairwise_jsd, record_jsd_matrix,
                                          remove_topk)
from tests.analysis.records import make_record


def test_jsd_matches_scipy_squared_on_random_inputs():
    rng = np.random.default_rng(0)
    for n in (2, 7, 50, 384):
        p, q = rng.random(n), rng.random(n)
        p[rng.random(n) < 0.3] = 0.0  # zeros exercise the 0 log 0 convention
        expected = jensenshannon(p, q, base=2) ** 2
        assert jensen_shannon(p, q) == pytest.approx(expected, abs=1e-12)


def test_pairwise_matrix_is_symmetric_bounded_zero_diagonal_and_matches_scipy():
    rng = np.random.default_rng(1)
    dists = rng.gamma(0.3, size=(7, 40))  # peaky, like IG importances
    m = pairwise_jsd(dists)
    assert m.shape == (7, 7)
    np.testing.assert_array_equal(m, m.T)
    np.testing.assert_array_equal(np.diag(m), 0.0)
    assert m.min() >= 0.0 and m.max() <= 1.0
    ref = np.array([[jensenshannon(a, b, base=2) ** 2 for b in dists] for a in dists])
    np.testing.assert_allclose(m, ref, atol=1e-12)


def test_disjoint_supports_give_one_bit_and_identical_give_zero():
    assert jensen_shannon([1, 0, 0], [0, 0, 5]) == pytest.approx(1.0)
    assert jensen_shannon([1, 2, 3], [2, 4, 6]) == pytest.approx(0.0, abs=1e-15)


def test_normalize_guards_all_zero_and_rejects_negative():
    np.testing.assert_allclose(normalize([[2, 0, 2], [0, 0, 0]]), [[0.5, 0, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    with pytest.raises(ValueError, match="non-negative"):
        normalize([1.0, -0.1])


def test_topk_retained_and_removed_on_hand_made_vector():
    v = np.array([0.1, 0.4, 0.2, 0.3])
    np.testing.assert_allclose(keep_topk(v, 2), [0, 4 / 7, 0, 3 / 7])
    np.testing.assert_allclose(remove_topk(v, 2), [1 / 3, 0, 2 / 3, 0])
    # row-wise on a matrix, ties go to the earlier token
    m = np.array([[1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 2.0]])
    np.testing.assert_allclose(keep_topk(m, 2), [[0.5, 0.5, 0, 0], [0, 0, 0, 1.0]])
    np.testing.assert_allclose(remove_topk(m, 1), [[0, 0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3, 0]])
    # nothing left outside the top-k: uniform over the remaining tokens; k >= N: uniform, not NaN
    np.testing.assert_allclose(remove_topk([0.0, 0.0, 3.0], 1), [0.5, 0.5, 0.0])
    np.testing.assert_allclose(remove_topk(v, 4), [0.25] * 4)
    with pytest.raises(ValueError):
        keep_topk(v, 0)


def test_variants_change_the_matrix_as_expected():
    # both layers share their top-2 tokens in the same proportion but differ in the tail
    imp = np.array([[5.0, 5.0, 1.0, 0.0], [5.0, 5.0, 0.0, 1.0]])
    assert layer_jsd_matrix(imp, "topk_retained", k=2)[0, 1] == pytest.approx(0.0, abs=1e-15)
    assert layer_jsd_matrix(imp, "topk_removed", k=2)[0, 1] == pytest.approx(1.0)
    full = layer_jsd_matrix(imp, "all")[0, 1]
    assert 0.0 < full < 1.0
    with pytest.raises(ValueError, match="unknown JSD variant"):
        layer_jsd_matrix(imp, "middle")


def test_record_matrix_uses_only_passage_tokens_and_accumulator_averages():
    # question/special tokens have importance 1 in make_record; only the passage may count
    a = make_record("who ?", "a b c", [[1, 0, 0], [0, 0, 1]])
    b = make_record("who ?", "a b c", [[1, 0, 0], [1, 0, 0]])
    np.testing.assert_allclose(record_jsd_matrix(a), [[0, 1], [1, 0]], atol=1e-12)
    acc = JSDAccumulator(layers=a.layers)
    acc.add(a)
    acc.add(b)
    assert acc.count == 2
    np.testing.assert_allclose(acc.mean(), [[0, 0.5], [0.5, 0]], atol=1e-12)
    np.testing.assert_allclose(mean_jsd_matrix([a, b, a], a.layers, max_examples=2), acc.mean())
    with pytest.raises(ValueError, match="zero examples"):
        JSDAccumulator(layers=a.layers).mean()
    with pytest.raises(ValueError, match="layers"):
        JSDAccumulator(layers=["embeddings"]).add(a)
