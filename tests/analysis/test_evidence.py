import numpy as np
import pytest

from lit_rcqa.analysis.evidence import EvidenceAccumulator, evidence_share, record_evidence_share, tokens_in_span
from tests.analysis.records import make_record

PASSAGE = "Tom is tall. Ann has a red car. Bob runs."
#          0   1  2     3   4   5 6   7    8   9
EVIDENCE = (13, 31)  # "Ann has a red car."


def test_tokens_in_span_uses_char_overlap_and_ignores_spanless_tokens():
    offsets = np.array([[0, 3], [10, 14], [14, 20], [30, 31], [31, 33], [-1, -1]])
    np.testing.assert_array_equal(tokens_in_span(offsets, (13, 31)), [False, True, True, True, False, False])
    assert PASSAGE[EVIDENCE[0]:EVIDENCE[1]] == "Ann has a red car."
    with pytest.raises(ValueError, match="invalid evidence span"):
        tokens_in_span(offsets, (5, 2))


def test_evidence_share_on_hand_made_records():
    imp = np.zeros((2, 10))
    imp[0, [4, 7, 9]] = [1.0, 2.0, 1.0]       # 3/4 of the mass inside the evidence sentence
    imp[1, [0, 9]] = [1.0, 1.0]                # none inside
    rec = make_record("What does Ann have?", PASSAGE, imp, pred_words=(6, 7), evidence_span=EVIDENCE)
    np.testing.assert_allclose(record_evidence_share(rec), [0.75, 0.0])
    offsets = rec.offsets[rec.passage_start:rec.passage_end]
    np.testing.assert_allclose(evidence_share(np.ones((1, 10)), offsets, EVIDENCE), [0.5])

    acc = EvidenceAccumulator(layers=rec.layers)
    acc.add(rec)
    acc.add(make_record("q", PASSAGE, np.ones((2, 10)), evidence_span=EVIDENCE))   # uniform: 5 of 10 tokens
    acc.add(make_record("q", PASSAGE, np.ones((2, 10))))                          # no span: skipped
    np.testing.assert_allclose(acc.mean(), [(0.75 + 0.5) / 2, 0.25])
    assert acc.chance() == pytest.approx(0.5)
    assert (acc.count, acc.skipped) == (2, 1)

    with pytest.raises(ValueError, match="no evidence span"):
        record_evidence_share(make_record("q", PASSAGE, imp))
    with pytest.raises(ValueError, match="no records"):
        EvidenceAccumulator(layers=rec.layers).mean()
