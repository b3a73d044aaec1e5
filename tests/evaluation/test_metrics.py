"""EM/F1 (functions and torchmetrics metrics) against transcriptions of the official scripts
(tests/evaluation/official_evaluate_v11.py and official_evaluate_v20.py): hand-built edge cases and
the real dev sets (the committed extracts in every clone, the full files where present), including a
held-out-style v2 set with golds that normalise to nothing (".")."""

from __future__ import annotations

import random

import pytest

from lit_rcqa.evaluation.metrics import (SquadExactMatch, SquadF1, SquadMetrics, exact_match_score, f1_score,
                                         max_over_golds, normalize_answer, question_scores, v2_eval_dict,
                                         v2_golds)
from tests.evaluation import official_evaluate_v11 as official_v11
from tests.evaluation import official_evaluate_v20 as official_v20
from tests.evaluation.squad_docs import (gold_lists, held_out_style_v2, make_doc, prediction_sets, questions,
                                        real_devs)


# ---- helpers ----------------------------------------------------------------------------------------
def ours(doc, preds, *, version_2, chunks=1):
    """SquadMetrics over every question of `doc` ({id: prediction} must hold them all), fed in chunks."""
    qas = questions(doc)
    metric = SquadMetrics(version_2=version_2)
    step = -(-len(qas) // chunks)
    for i in range(0, len(qas), step):
        part = qas[i:i + step]
        metric.update([preds[qa["id"]] for qa in part], [[a["text"] for a in qa["answers"]] for qa in part])
    return {k: (int(v) if k.endswith("total") else float(v)) for k, v in metric.compute().items()}


def official_v2_as_ours(doc, preds):
    """evaluate-v2.0.py's output with the overall EM under our key (exact_match) instead of "exact"."""
    out = official_v20.evaluate(doc["data"], preds)
    return {("exact_match" if k == "exact" else k): v for k, v in out.items()}


def assert_matches(got, want, *, f1_abs=1e-9):
    """EM equals exactly (sums of 0/1); F1 within 1e-9: our F1 state is fixed point (see metrics.py),
    at most 2**-41 per question off the float sum. SquadMetrics reports the HasAns_/NoAns_ split only
    when some question is unanswerable (the keys train.py logs); the official script whenever a group
    is non-empty."""
    if "NoAns_total" not in want:
        want = {k: v for k, v in want.items() if not k.startswith("HasAns_")}
    assert got.keys() == want.keys()
    for key, value in want.items():
        if "f1" in key:
            assert got[key] == pytest.approx(value, abs=f1_abs), key
        else:
            assert got[key] == value, key


# ---- the defect: v2 drops golds that normalise to nothing ------------------------------------------
def test_v2_drops_golds_that_normalise_to_nothing():
    """evaluate-v2.0.py scores golds [".", "Denver"] as ["Denver"]: the empty prediction is wrong."""
    doc = make_doc([("q", [".", "Denver"])])
    for pred, want in (("", (0.0, 0.0)), ("Denver", (100.0, 100.0)), (".", (0.0, 0.0))):
        reference = official_v2_as_ours(doc, {"q": pred})
        assert (reference["exact_match"], reference["f1"]) == want  # the transcription says so
        assert_matches(ours(doc, {"q": pred}, version_2=True), reference)
    assert v2_golds([".", "Denver"]) == ["Denver"] and v2_golds([".", " ,"]) == [""] and v2_golds([]) == [""]
    assert question_scores("", [".", "Denver"], version_2=True) == (0.0, 0.0)


def test_v1_keeps_golds_that_normalise_to_nothing():
    """evaluate-v1.1.py never drops a gold: "" equals "." after normalisation (EM 1) with F1 0."""
    doc = make_doc([("q", [".", "Denver"])], version="1.1")
    reference = official_v11.evaluate(doc["data"], {"q": ""})
    assert reference == {"exact_match": 100.0, "f1": 0.0}
    got = ours(doc, {"q": ""}, version_2=False)
    assert (got["exact_match"], got["f1"]) == (reference["exact_match"], reference["f1"])
    assert question_scores("", [".", "Denver"], version_2=False) == (1.0, 0.0)


# ---- hand-built edge cases, both scripts ------------------------------------------------------------
_EDGE_GOLDS = [
    ("dot_and_word", [".", "Denver Broncos"]),
    ("only_dot", ["."]),
    ("only_punct_and_articles", ["!?", "the", "a an"]),
    ("articles_inside", ["the Broncos", "Broncos of Denver"]),
    ("repeated_tokens", ["cat cat dog"]),
    ("unicode", ["Zürich – Genève", "Zürich"]),
    ("no_answer_1", []),
    ("no_answer_2", []),
]
_EDGE_PREDS = ["", ".", " ", "the", "Denver", "Broncos", "denver broncos!", "cat dog dog", "Zürich",
               "a Broncos the", "x", "Genève Zürich"]


@pytest.mark.parametrize("seed", range(6))
def test_hand_built_edge_cases_match_evaluate_v20(seed):
    rng = random.Random(seed)
    doc = make_doc(_EDGE_GOLDS)
    preds = {qid: rng.choice(_EDGE_PREDS) for qid, _ in _EDGE_GOLDS}
    reference = official_v2_as_ours(doc, preds)
    assert reference["HasAns_total"] == 6 and reference["NoAns_total"] == 2
    for chunks in (1, 3):
        assert_matches(ours(doc, preds, version_2=True, chunks=chunks), reference)


@pytest.mark.parametrize("seed", range(6))
def test_hand_built_edge_cases_match_evaluate_v11(seed):
    rng = random.Random(seed)
    golds = [(qid, g) for qid, g in _EDGE_GOLDS if g]  # v1.1 has no unanswerable questions
    doc = make_doc(golds, version="1.1")
    preds = {qid: rng.choice(_EDGE_PREDS) for qid, _ in golds}
    reference = official_v11.evaluate(doc["data"], preds)
    got = ours(doc, preds, version_2=False)
    assert got.keys() == {"exact_match", "f1", "total"} and got["total"] == len(golds)
    assert got["exact_match"] == reference["exact_match"]
    assert got["f1"] == pytest.approx(reference["f1"], abs=1e-9)


def test_every_edge_pair_scores_as_both_scripts():
    """Per question, not only per total: every (prediction, golds) pair of the table."""
    for _, golds in _EDGE_GOLDS:
        v2_refs = [a for a in golds if official_v20.normalize_answer(a)] or [""]
        for pred in _EDGE_PREDS:
            want_v2 = (max(official_v20.compute_exact(a, pred) for a in v2_refs),
                       max(official_v20.compute_f1(a, pred) for a in v2_refs))
            assert question_scores(pred, golds, version_2=True) == want_v2, (pred, golds)
            if golds:
                want_v1 = (official_v11.metric_max_over_ground_truths(official_v11.exact_match_score, pred, golds),
                           official_v11.metric_max_over_ground_truths(official_v11.f1_score, pred, golds))
                assert question_scores(pred, golds, version_2=False) == want_v1, (pred, golds)


def test_single_value_metrics_agree_with_squad_metrics():
    rng = random.Random(7)
    golds = [g for _, g in _EDGE_GOLDS] * 5
    preds = [rng.choice(_EDGE_PREDS) for _ in golds]
    for version_2 in (False, True):
        full, em, f1 = SquadMetrics(version_2=version_2), SquadExactMatch(version_2), SquadF1(version_2)
        for m in (full, em, f1):
            m.update(preds, golds)
        out = full.compute()
        assert float(em.compute()) == float(out["exact_match"]) and float(f1.compute()) == float(out["f1"])
    # the v2 rule is what makes these differ: golds ["."] are "" for v2, so "" is right only there
    v1, v2 = SquadExactMatch(), SquadExactMatch(version_2=True)
    v1.update(["", ""], [[".", "Denver"], ["."]])
    v2.update(["", ""], [[".", "Denver"], ["."]])
    assert float(v1.compute()) == 100.0 and float(v2.compute()) == 50.0


# ---- real dev sets: the committed extracts in every clone, the full files where present ------------
_EXTRACT_AND_FULL = ["extract", "full"]
_EXTRACT_AND_FULL_SLOW = ["extract", pytest.param("full", marks=pytest.mark.slow)]  # full v1.1 dev: 10570 questions


@pytest.fixture(scope="module")
def real(request):
    """(v1.1 dev, v2.0 dev) as RealDev: the extracts, or the full files (skipped where absent)."""
    return real_devs(request.param, request)


@pytest.fixture(scope="module")
def dev_v1(real):
    return real[0], real[0].read()


@pytest.fixture(scope="module")
def dev_v2(real):
    return real[1], real[1].read()


@pytest.mark.parametrize("real", _EXTRACT_AND_FULL_SLOW, indirect=True)
def test_v1_matches_evaluate_v11_on_real_dev(dev_v1):
    facts, doc = dev_v1
    assert len(questions(doc)) == facts.questions
    for name, preds in prediction_sets(doc).items():
        reference = official_v11.evaluate(doc["data"], preds)
        got = ours(doc, preds, version_2=False, chunks=4)
        assert got["total"] == facts.questions and "NoAns_total" not in got, name
        assert got["exact_match"] == reference["exact_match"], name
        assert got["f1"] == pytest.approx(reference["f1"], abs=1e-9), name
    assert reference["exact_match"] < 10  # the last set, random spans, is mostly wrong: the check has teeth


@pytest.mark.parametrize("real", _EXTRACT_AND_FULL_SLOW, indirect=True)
def test_v2_rule_matches_evaluate_v20_on_real_v1_dev(dev_v1):
    """The v1.1 dev set holds real "." golds (3; 2 in the extract); v2 scoring must drop them as
    evaluate-v2.0.py does."""
    facts, doc = dev_v1
    sets = prediction_sets(doc, seed=2)
    for name in ("empty", "perturbed"):  # the sets where "." golds change the scores
        assert_matches(ours(doc, sets[name], version_2=True, chunks=4), official_v2_as_ours(doc, sets[name]))
    # The "." golds are there and the rule bites: "" matches them under evaluate-v1.1.py only.
    assert official_v11.evaluate(doc["data"], sets["empty"])["exact_match"] == pytest.approx(
        100.0 * facts.dot_questions / facts.questions)
    assert official_v2_as_ours(doc, sets["empty"])["exact_match"] == 0.0


@pytest.mark.parametrize("real", _EXTRACT_AND_FULL, indirect=True)
def test_v2_matches_evaluate_v20_on_real_v2_dev(dev_v2):
    facts, doc = dev_v2
    n, n_na = facts.questions, facts.unanswerable
    assert len(questions(doc)) == n and sum(1 for qa in questions(doc) if not qa["answers"]) == n_na
    results = {}
    for name, preds in prediction_sets(doc, seed=1).items():
        reference = official_v2_as_ours(doc, preds)
        assert_matches(ours(doc, preds, version_2=True, chunks=3), reference)
        results[name] = reference
    # gold answers for the answerable, "" for the rest: everything right, by the official script too
    assert results["gold"] == {"exact_match": 100.0, "f1": 100.0, "total": n,
                               "HasAns_exact": 100.0, "HasAns_f1": 100.0, "HasAns_total": n - n_na,
                               "NoAns_exact": 100.0, "NoAns_f1": 100.0, "NoAns_total": n_na}
    # all empty: exactly the unanswerable questions are right
    assert results["empty"]["exact_match"] == pytest.approx(100.0 * n_na / n)
    assert results["empty"]["HasAns_exact"] == 0.0 and results["empty"]["NoAns_f1"] == 100.0


@pytest.mark.parametrize("real", _EXTRACT_AND_FULL, indirect=True)
def test_held_out_style_v2_with_dot_golds_equals_evaluate_v20(dev_v2, dev_v1):
    doc = held_out_style_v2(dev_v2[1], dev_v1[1], dot_questions=dev_v1[0].dot_questions)
    norm = official_v20.normalize_answer
    n_dot_only = sum(1 for qa in questions(doc) if qa["answers"] and not any(norm(a["text"]) for a in qa["answers"]))
    assert n_dot_only >= 5
    for name, preds in prediction_sets(doc, seed=4).items():
        reference = official_v2_as_ours(doc, preds)
        assert_matches(ours(doc, preds, version_2=True, chunks=2), reference)
    # The rule matters here: scoring the empty predictions without dropping "." golds (as before) differs.
    empty = prediction_sets(doc)["empty"]
    no_drop = sum(max(float(norm(g) == "") for g in (golds or [""])) for golds in gold_lists(doc))
    assert official_v2_as_ours(doc, empty)["exact_match"] != pytest.approx(100.0 * no_drop / len(empty))


# ---- functions by hand ----------------------------------------------------------------------------
def test_normalisation_and_scores_by_hand():
    assert normalize_answer("  The  Cat, an apple!  ") == "cat apple"
    assert normalize_answer("theater") == "theater"  # articles only as whole words
    assert exact_match_score("the Broncos.", "Broncos") == 1.0
    assert f1_score("Denver Broncos", "the Broncos") == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert f1_score("cat cat dog", "cat dog dog") == pytest.approx(2 / 3)  # multiset overlap
    assert f1_score("", "", version_2=True) == 1.0 and f1_score("the", "a", version_2=True) == 1.0  # both empty
    assert f1_score("", "") == 0.0 and f1_score("", ".") == 0.0  # v1.1: no overlap is 0, even for empty golds
    assert f1_score("", "Broncos") == 0.0 and f1_score("Broncos", "", version_2=True) == 0.0
    assert max_over_golds(exact_match_score, "", []) == 1.0  # unanswerable: gold is ""
    assert max_over_golds(f1_score, "Denver", ["Broncos", "Denver Broncos"]) == pytest.approx(2 / 3)


def test_metric_accumulates_over_updates_and_rejects_mismatched_inputs():
    m = SquadMetrics()
    m.update(["a cat"], [["cat"]])
    m.update(["dog", ""], [["cat"], []])
    out = m.compute()
    assert float(out["exact_match"]) == pytest.approx(200 / 3) and int(out["total"]) == 3
    assert int(out["HasAns_total"]) == 2 and float(out["NoAns_exact"]) == 100.0
    with pytest.raises(ValueError):
        m.update(["a", "b"], [["a"]])
    with pytest.raises(ValueError):
        SquadF1().update("a string", [["a"]] * 8)


@pytest.mark.parametrize("seed", range(5))
def test_v2_eval_dict_is_the_official_make_eval_dict_and_merge_eval_float_for_float(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 40)
    ids = [f"q{i}" for i in range(n)]
    has_ans = {q: rng.random() < 0.6 for q in ids}
    exact = {q: float(rng.random() < 0.5) for q in ids}
    f1 = {q: rng.choice([0.0, 1.0, 2 / 3, 0.4, 1 / 7, rng.random()]) for q in ids}
    want = official_v20.make_eval_dict(exact, f1)
    for prefix, wanted in (("HasAns", True), ("NoAns", False)):
        group = [q for q in ids if has_ans[q] is wanted]
        if group:
            official_v20.merge_eval(want, official_v20.make_eval_dict(exact, f1, qid_list=group), prefix)
    got = v2_eval_dict(list(exact.values()), list(f1.values()), [has_ans[q] for q in ids])
    assert list(got) == list(want) and got == dict(want)  # the same floats, not merely close ones
    # the training metric's groups are the same numbers, summed in fixed point
    metric = SquadMetrics(version_2=True)
    golds = [["x"] if has_ans[q] else [] for q in ids]
    preds = ["x" if (exact[q] and has_ans[q]) or (not exact[q] and not has_ans[q]) else "y" for q in ids]
    metric.update(preds, golds)
    values = {k: float(v) for k, v in metric.compute().items()}
    em = [float(p == "x") if h else float(p == "") for p, h in zip(preds, (has_ans[q] for q in ids))]
    expected = v2_eval_dict(em, em, [has_ans[q] for q in ids])  # one-word answers: F1 = EM
    expected["exact_match"] = expected.pop("exact")
    if all(has_ans.values()):  # no unanswerable question: no split
        expected = {k: v for k, v in expected.items() if not k.startswith("HasAns_")}
    assert values == pytest.approx(expected)
