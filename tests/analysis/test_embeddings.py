import numpy as np
import pytest
from threadpoolctl import ThreadpoolController

from lit_rcqa.analysis.embeddings import (clip_perplexity, record_categories, sentence_span, token_categories,
                                          tsne_points)
from tests.analysis.records import make_record


def test_clip_perplexity_keeps_default_for_long_inputs_and_clips_short_ones():
    assert clip_perplexity(40, 384) == 40
    assert clip_perplexity(40, 31) == 10
    assert clip_perplexity(40, 2) == 1
    for n in range(2, 130):
        assert 1 <= clip_perplexity(40, n) < n


@ThreadpoolController().wrap(limits=1)  # OpenMP spin-up dominates for a few dozen points on a busy machine
def test_tsne_points_shape_determinism_and_short_inputs():
    rng = np.random.default_rng(0)
    # two well-separated clusters must stay separated in 2-d
    hidden = np.concatenate([rng.normal(0, 0.1, (12, 16)), rng.normal(5, 0.1, (12, 16))])
    pts = tsne_points(hidden, random_state=0)  # perplexity 40 clipped to 23/3 for 24 points
    assert pts.shape == (24, 2)
    np.testing.assert_array_equal(pts, tsne_points(hidden, random_state=0))
    a, b = pts[:12], pts[12:]
    within = max(np.ptp(a, axis=0).max(), np.ptp(b, axis=0).max())
    assert np.linalg.norm(a.mean(0) - b.mean(0)) > within
    assert tsne_points(rng.normal(size=(3, 4))).shape == (3, 2)
    assert tsne_points(rng.normal(size=(1, 4))).shape == (1, 2)
    with pytest.raises(ValueError, match=r"\[T, H\]"):
        tsne_points(np.zeros(5))


def test_sentence_span():
    text = 'He left. "She came back!" Then 3.5 hours passed.\nNew line here'
    assert text[slice(*sentence_span(text, 12, 15))] == '"She came back!" '
    assert text[slice(*sentence_span(text, 30, 33))] == "Then 3.5 hours passed.\n"
    assert text[slice(*sentence_span(text, 0, 2))] == "He left. "
    assert text[slice(*sentence_span(text, 52, 56))] == "New line here"


def test_token_categories_on_a_hand_made_record():
    passage = "Tom is tall. Ann has a red car. Bob runs."
    rec = make_record("What does Ann have ?", passage, np.ones((1, 10)), pred_words=(6, 7))  # "red car."
    cats = record_categories(rec)
    expected = (["special"] + ["question"] * 5 + ["special"]
                + ["other"] * 3 + ["context"] * 3 + ["answer"] * 2 + ["other"] * 2 + ["special"])
    assert cats == expected
    # byte-level BPE special tokens, and a prediction outside the passage gives no context
    cats = token_categories(["<s>", "q", "</s>", "</s>", "x", "</s>"], np.array([[-1, -1]] * 4 + [[0, 1], [-1, -1]]),
                            "x", passage_start=4, pred_start=0, pred_end=0)
    assert cats == ["special", "question", "special", "special", "other", "special"]
