"""Post-processing on hand-built features and logits: every rule checked on its own."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lit_rcqa.data.example import Answer, QAExample
from lit_rcqa.data.features import Features
from lit_rcqa.evaluation.postprocess import NBestEntry, postprocess_predictions
from tests.conftest import SQUAD_V1_EXTRACT

CONTEXT = "alpha beta gamma delta epsilon zeta eta theta"
WORD_SPANS = [(0, 5), (6, 10), (11, 16), (17, 22), (23, 30), (31, 35), (36, 39), (40, 45)]


def _example(qid="q1"):
    return QAExample(id=qid, title="t", context=CONTEXT, question="which?", answers=(Answer("beta", 6),))


def _features(windows, max_context=None, example_index=None):
    """Windows of CONTEXT as [CLS] q q [SEP] words... [SEP]; `windows` are (first word, last word)."""
    feats = dict(input_ids=[], attention_mask=[], token_type_ids=None, offsets=[], token_is_max_context=[],
                 example_index=[], start_positions=[], end_positions=[], cls_index=[])
    for k, (lo, hi) in enumerate(windows):
        words = WORD_SPANS[lo:hi + 1]
        n = 4 + len(words) + 1
        feats["input_ids"].append(list(range(n)))
        feats["attention_mask"].append([1] * n)
        feats["offsets"].append([None] * 4 + list(words) + [None])
        flags = max_context[k] if max_context else [True] * len(words)
        feats["token_is_max_context"].append([False] * 4 + flags + [False])
        feats["example_index"].append(example_index[k] if example_index else 0)
        feats["start_positions"].append(0)
        feats["end_positions"].append(0)
        feats["cls_index"].append(0)
    return Features(**feats)


def _logits(n, peaks):
    x = np.full(n, -10.0)
    for i, v in peaks.items():
        x[i] = v
    return x


def _run(features, starts, ends, **kwargs):
    return postprocess_predictions([_example()], features, starts, ends, **kwargs)


def test_best_span_text_cut_from_context_and_entry_fields():
    f = _features([(0, 7)])
    # token 4 + w: word w. Best pair: start word 1 (beta), end word 2 (gamma).
    preds, nbest = _run(f, [_logits(13, {5: 3.0, 7: 1.0})], [_logits(13, {6: 2.0, 8: 0.5})])
    assert preds["q1"] == "beta gamma"
    top = nbest["q1"][0]
    assert top == NBestEntry("beta gamma", top.probability, 3.0, 2.0, 0, 5, 6, 6, 16)
    assert CONTEXT[top.start_char:top.end_char] == top.text


def test_end_before_start_and_too_long_spans_are_skipped():
    f = _features([(0, 7)])
    # the best start (word 5) is after the best end (word 1): not allowed
    # Valid pairs: (beta, beta) = 1 + 5 = 6 beats (zeta, eta) = 5 + 0 = 5; (zeta, beta) = 10 is not allowed.
    preds, nbest = _run(f, [_logits(13, {9: 5.0, 5: 1.0})], [_logits(13, {5: 5.0, 10: 0.0})])
    assert preds["q1"] == "beta"
    assert [(e.text, e.start_logit + e.end_logit) for e in nbest["q1"][:2]] == [("beta", 6.0), ("zeta eta", 5.0)]
    assert all(e.end_token >= e.start_token for e in nbest["q1"])
    # longest allowed span is max_answer_length tokens
    preds, nbest = _run(f, [_logits(13, {4: 5.0, 9: 0.0})], [_logits(13, {11: 5.0, 10: 0.0})], max_answer_length=3)
    assert all(e.end_token - e.start_token + 1 <= 3 for e in nbest["q1"])
    assert preds["q1"] != "alpha beta gamma delta epsilon zeta eta theta"
    preds, _ = _run(f, [_logits(13, {4: 5.0})], [_logits(13, {11: 5.0})], max_answer_length=8)
    assert preds["q1"] == CONTEXT


def test_spans_outside_the_context_are_never_predicted():
    f = _features([(0, 7)])
    # huge logits on CLS, the question and the final SEP
    start = _logits(13, {0: 50.0, 1: 40.0, 2: 40.0, 12: 40.0, 6: 1.0})
    end = _logits(13, {0: 50.0, 3: 40.0, 12: 40.0, 6: 1.0})
    preds, nbest = _run(f, [start], [end])
    assert preds["q1"] == "gamma"
    assert all(f.offsets[0][e.start_token] is not None and f.offsets[0][e.end_token] is not None for e in nbest["q1"])


def test_max_context_rule_picks_the_window_where_the_start_is_scored():
    # two windows share words 2..5; word 3 ("delta") is max-context only in window 1
    f = _features([(0, 5), (2, 7)], max_context=[[True, True, True, False, False, False],
                                                    [False, True, True, True, True, True]])
    start0 = _logits(11, {4 + 3: 9.0})  # window 0, delta: high but not max-context there
    end0 = _logits(11, {4 + 3: 9.0})
    start1 = _logits(11, {4 + 1: 2.0})  # window 1, delta is word 1 of the window
    end1 = _logits(11, {4 + 1: 2.0})
    preds, nbest = _run(f, [start0, start1], [end0, end1])
    assert preds["q1"] == "delta"
    assert nbest["q1"][0].feature_index == 1 and nbest["q1"][0].start_logit == 2.0


def test_padded_and_unpadded_logits_give_the_same_result():
    f = _features([(0, 7)])
    start, end = _logits(13, {6: 2.0, 8: 1.0}), _logits(13, {7: 2.0, 9: 1.5})
    padded = [np.concatenate([start, np.full(7, 99.0)])], [np.concatenate([end, np.full(7, 99.0)])]
    assert _run(f, [start], [end]) == _run(f, *padded)


def test_probabilities_are_a_softmax_over_nbest_and_sorted():
    f = _features([(0, 7)])
    rng = np.random.default_rng(0)
    start, end = rng.standard_normal(13), rng.standard_normal(13)
    _, nbest = _run(f, [start], [end], n_best=5)
    entries = nbest["q1"]
    assert len(entries) == 5
    scores = [e.start_logit + e.end_logit for e in entries]
    assert scores == sorted(scores, reverse=True)
    assert math.fsum(e.probability for e in entries) == pytest.approx(1.0, abs=1e-12)
    z = sum(math.exp(s) for s in scores)
    assert [e.probability for e in entries] == pytest.approx([math.exp(s) / z for s in scores])


def test_version_2_null_threshold_and_null_entry():
    f = _features([(0, 3), (2, 7)], max_context=[[True, True, True, False], [False, True, True, True, True, True]])
    # null (CLS) scores: 4 + 4 = 8 in window 0, 1 + 1 = 2 in window 1 -> the minimum is 2 (window 1)
    s0, e0 = _logits(9, {0: 4.0, 5: 1.5}), _logits(9, {0: 4.0, 5: 1.0})  # best span 2.5 ("beta")
    s1, e1 = _logits(11, {0: 1.0}), _logits(11, {0: 1.0})
    preds, nbest = _run(f, [s0, s1], [e0, e1], version_2=True)
    assert preds["q1"] == "beta"  # null 2 - best 2.5 = -0.5, not > 0
    null = [e for e in nbest["q1"] if e.text == ""]
    assert len(null) == 1 and null[0].feature_index == 1 and null[0].start_logit + null[0].end_logit == 2.0
    assert null[0].start_char == null[0].end_char == -1
    preds, _ = _run(f, [s0, s1], [e0, e1], version_2=True, null_threshold=-1.0)
    assert preds["q1"] == ""  # -0.5 > -1
    # v1 ignores the null score entirely and never lists an empty entry when a span exists
    preds, nbest = _run(f, [s0, s1], [e0, e1])
    assert preds["q1"] == "beta" and all(e.text for e in nbest["q1"])


def test_null_entry_stays_in_a_full_nbest_list():
    f = _features([(0, 7)])
    start, end = _logits(13, {0: -50.0}), _logits(13, {0: -50.0})
    start[4:12], end[4:12] = np.arange(8), np.arange(8)
    _, nbest = _run(f, [start], [end], version_2=True, n_best=3)
    assert len(nbest["q1"]) == 3 and nbest["q1"][-1].text == ""


def test_no_valid_span_predicts_empty():
    f = _features([(0, 7)])
    start, end = _logits(13, {10: 5.0}), _logits(13, {4: 5.0})  # only end < start among the top pairs
    preds, nbest = _run(f, [start], [end], n_best=1)
    assert preds["q1"] == ""
    assert [e.text for e in nbest["q1"]] == [""] and nbest["q1"][0].probability == 1.0


def test_ties_are_broken_deterministically():
    f = _features([(0, 7), (0, 7)])
    flat = np.zeros(13)
    preds, nbest = _run(f, [flat, flat], [flat, flat], n_best=20)
    # all scores equal: first feature, then earliest start, then earliest end
    assert [(e.feature_index, e.start_token, e.end_token) for e in nbest["q1"][:4]] == [(0, 4, 4), (0, 4, 5),
                                                                                        (0, 4, 6), (0, 4, 7)]
    assert all(e.feature_index == 0 for e in nbest["q1"])
    assert preds["q1"] == "alpha"


def test_several_examples_and_logit_count_check():
    ex2 = QAExample(id="q2", title="t", context=CONTEXT, question="?", answers=())
    f = _features([(0, 7), (0, 7)], example_index=[0, 1])
    s = [_logits(13, {4: 1.0}), _logits(13, {11: 1.0})]
    preds, _ = postprocess_predictions([_example(), ex2], f, s, s)
    assert preds == {"q1": "alpha", "q2": "theta"}
    with pytest.raises(ValueError):
        postprocess_predictions([_example(), ex2], f, s[:1], s)


def best_valid_spans(features, f_indices, starts, ends, max_answer_length=30):
    """Brute force, independent of post-processing's top-n search: every (window, start, end) the
    rules allow (both tokens in the context, start <= end < start + max_answer_length, start scored
    in that window), scored start + end. Returns the best score and the set of texts reaching it
    as (start_char, end_char) pairs."""
    best, spans = -math.inf, set()
    for f in f_indices:
        offsets, max_ctx = features.offsets[f], features.token_is_max_context[f]
        n = len(offsets)
        start_ok = np.array([o is not None and m for o, m in zip(offsets, max_ctx)])  # [T]
        end_ok = np.array([o is not None for o in offsets])  # [T]
        end_at = np.arange(n)[:, None] + np.arange(max_answer_length)[None, :]  # [T, L]: every end from each start
        inside = end_at < n
        end_at = np.minimum(end_at, n - 1)
        valid = start_ok[:, None] & inside & end_ok[end_at]  # [T, L]
        if not valid.any():
            continue
        score = np.where(valid, np.asarray(starts[f])[:n, None] + np.asarray(ends[f])[end_at], -np.inf)  # [T, L]
        top = score.max()
        if top < best:
            continue
        if top > best:
            best, spans = top, set()
        for s_tok, k in zip(*np.nonzero(score == top)):
            spans.add((offsets[s_tok][0], offsets[end_at[s_tok, k]][1]))
    return best, spans


@pytest.fixture(params=["extract", pytest.param("full_dev", marks=pytest.mark.slow)])
def dev_v1_examples(request):
    """The committed v1.1 dev extract (every clone) and the full dev set (slow; where present)."""
    from lit_rcqa.data.squad import load_squad

    if request.param == "extract":
        return load_squad(SQUAD_V1_EXTRACT).examples
    return load_squad(request.getfixturevalue("shared_data") / "dev-v1.1.json.gz").examples


def test_round_trip_gold_logits_recover_gold_answers(dev_v1_examples, tokenizer):
    """Dev features (384/128/64) + one-hot logits at the gold start/end labels -> post-processing,
    checked example by example against a brute-force search over all valid spans.

    Measured: extract 291 exact + 2 unaligned + 0 too long of 293; full dev 10529 + 32 + 9 of 10570,
    EM 99.6973 (10538 / 10570), F1 99.7519. A gold label pair is a valid span
    (score 2, reached by exactly one span) unless the answer is longer than max_answer_length = 30
    tokens; post-processing must then predict that span, which is the gold text when the answer starts
    and ends on token boundaries, and otherwise the whole tokens around it (an annotation that begins
    or ends inside a word: "8" inside "18", "wards" in "backwards"), a longer text.
    """
    from lit_rcqa.data.features import FeatureConfig, build_features
    from lit_rcqa.evaluation.metrics import SquadMetrics

    examples = dev_v1_examples
    features = build_features(examples, tokenizer, FeatureConfig(), training=False)
    starts, ends = [], []
    for i, ids in enumerate(features.input_ids):
        s, e = np.zeros(len(ids)), np.zeros(len(ids))
        s[features.start_positions[i]] = 1.0
        e[features.end_positions[i]] = 1.0
        starts.append(s)
        ends.append(e)
    preds, nbest = postprocess_predictions(examples, features, starts, ends)

    windows: dict[int, list[int]] = {}
    for f, e in enumerate(features.example_index):
        windows.setdefault(e, []).append(f)
    exact = unaligned = too_long = 0
    for e, ex in enumerate(examples):
        answer = ex.answers[0]
        a_start, a_end = answer.answer_start, answer.answer_start + len(answer.text)
        tokens = {o for f in windows[e] for o in features.offsets[f] if o is not None}
        gold_tokens = [o for o in tokens if o[0] < a_end and o[1] > a_start]
        best, spans = best_valid_spans(features, windows[e], starts, ends)
        top = nbest[ex.id][0]
        if best < 2:  # the gold pair is not a valid span: only because it is too long
            assert len(gold_tokens) > 30, (ex.id, best)
            assert top.start_logit + top.end_logit <= best
            too_long += 1
            continue
        (start_char, end_char), = spans  # one span reaches 2: the gold labels
        assert (start_char, end_char) == (min(gold_tokens)[0], max(gold_tokens)[1])
        assert (top.start_char, top.end_char, top.start_logit + top.end_logit) == (start_char, end_char, 2.0)
        assert preds[ex.id] == ex.context[start_char:end_char]
        boundaries = {o[0] for o in tokens} | {o[1] for o in tokens}
        if a_start in boundaries and a_end in boundaries:
            assert preds[ex.id].split() == answer.text.split()
            exact += 1
        else:
            assert answer.text.strip() in preds[ex.id] and preds[ex.id].split() != answer.text.split()
            unaligned += 1
    print(f"round trip: {exact} exact, {unaligned} unaligned, {too_long} too long of {len(examples)}")
    assert exact + unaligned + too_long == len(examples) and exact >= 0.99 * len(examples)

    metric = SquadMetrics()
    metric.update([preds[ex.id] for ex in examples], [[a.text for a in ex.answers] for ex in examples])
    assert float(metric.compute()["exact_match"]) >= 100 * exact / len(examples)  # other golds may match too
