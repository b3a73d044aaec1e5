"""RowBuffer, and the two accumulators that keep one compact row per example: same numbers as the plain formulas."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

from lit_rcqa.analysis.completeness import CompletenessAccumulator
from lit_rcqa.analysis.quantifiers import OutcomeAccumulator, quantifier_summary
from lit_rcqa.analysis.rows import RowBuffer
from tests.analysis.records import make_record

LAYERS = ["embeddings", "layer_01", "layer_02"]


def test_row_buffer_holds_the_rows_in_order_in_at_most_twice_their_bytes():
    rows = np.random.default_rng(0).normal(size=(1000, 3))
    buffer = RowBuffer(3, capacity=4)
    for i, row in enumerate(rows):
        buffer.append(row)
        assert len(buffer) == i + 1
    np.testing.assert_array_equal(buffer.array(), rows)
    assert buffer.array().flags.c_contiguous and not buffer.array().flags.writeable
    assert rows.nbytes <= buffer.nbytes <= 2 * rows.nbytes
    with pytest.raises(ValueError, match="expected 3"):
        buffer.append([1.0, 2.0])
    assert len(RowBuffer(2)) == 0 and RowBuffer(2).array().shape == (0, 2)


def _plain_completeness(deltas, steps, converged, threshold):
    """The summary as a list of per-example arrays gives it (the formula before the accumulator kept rows)."""
    d, s = np.stack(deltas), np.stack(steps).astype(np.float64)
    missed = sum((~c).astype(np.float64) for c in converged if c is not None)
    defined = (~np.isnan(d)).sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        stats = [np.nanmedian(d, axis=0), np.nanpercentile(d, 95, axis=0), np.nanmax(d, axis=0)]
    above = np.where(defined > 0, (d > threshold).sum(axis=0) / np.maximum(defined, 1), np.nan)
    return np.stack([*stats, above, s.mean(axis=0), s.min(axis=0), s.max(axis=0), np.median(s, axis=0),
                     np.percentile(s, 95, axis=0), missed * np.ones(d.shape[1])], axis=1)


def test_completeness_summary_is_bitwise_the_plain_formula():
    rng = np.random.default_rng(1)
    base = make_record("Who ?", "a b c d", np.ones((3, 4)))
    acc, deltas, steps, converged = CompletenessAccumulator(LAYERS), [], [], []
    for i in range(301):
        delta = rng.lognormal(-3, 2, size=3)
        delta[rng.random(3) < 0.1] = np.nan  # F(h) = F(b): undefined gaps are left out
        delta[2] = np.nan                    # one layer never defined: NaN statistics, as before
        step = rng.integers(2, 300, size=3).astype(np.int32)
        # a fixed rule records no target (None); an accuracy target records which layers met it
        flags = None if i % 2 else rng.random(3) < 0.8
        acc.add(dataclasses.replace(base, delta=delta, steps=step, converged=flags))
        deltas.append(delta)
        steps.append(step)
        converged.append(flags)
    np.testing.assert_array_equal(acc.summary(), _plain_completeness(deltas, steps, converged, acc.threshold))
    assert acc.n_unconverged == sum(int((~c).sum()) for c in converged if c is not None) > 0
    assert acc.count == 301
    with pytest.raises(ValueError, match="no examples"):
        CompletenessAccumulator(LAYERS).summary()


def test_outcomes_summary_is_the_plain_quantifier_summary():
    rng = np.random.default_rng(2)
    flags = rng.random(257) < 0.3
    em = 100.0 * (rng.random(257) < 0.6)
    confidence = rng.random(257)
    acc = OutcomeAccumulator()
    for f, e, c in zip(flags.tolist(), em.tolist(), confidence.tolist()):
        acc.add(f, e, c)
    assert len(acc) == 257
    assert acc.summary() == quantifier_summary(flags, em, confidence)
