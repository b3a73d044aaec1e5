"""EM/F1 against independent references: torchmetrics' SQuAD functional (v1.1) and a v2.0 reference
written here from the official evaluate-v2.0.py definition, on the real dev sets."""

from __future__ import annotations

import random
import re
import string
from collections import Counter

import pytest
import torch

from lit_rcqa.data.squad import load_squad
from lit_rcqa.evaluation.metrics import (SquadExactMatch, SquadF1, SquadMetrics, exact_match_score, f1_score,
                                         max_over_golds, normalize_answer)


# ---- an independent v2.0 reference, transcribed from the official definition ----------------------
def _ref_normalize(s):
    def remove_articles(text):
        return re.compile(r"\b(a|an|the)\b", re.UNICODE).sub(" ", text)

    def remove_punc(text):
        return "".join(ch for ch in text if ch not in set(string.punctuation))

    return " ".join(remove_articles(remove_punc(s.lower())).split())


def _ref_tokens(s):
    return _ref_normalize(s).split() if s else []


def _ref_f1(gold, pred):
    gold_toks, pred_toks = _ref_tokens(gold), _ref_tokens(pred)
    common = Counter(gold_toks) & Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def _ref_v2(golds_by_id, preds):
    """evaluate-v2.0.py's get_raw_scores + make_eval_dict + has/no-answer split (no threshold)."""
    exact, f1 = {}, {}
    for qid, golds in golds_by_id.items():
        golds = [a for a in golds if _ref_normalize(a)] or [""]
        exact[qid] = max(int(_ref_normalize(a) == _ref_normalize(preds[qid])) for a in golds)
        f1[qid] = max(_ref_f1(a, preds[qid]) for a in golds)
    has = [q for q, g in golds_by_id.items() if g]
    no = [q for q, g in golds_by_id.items() if not g]
    out = {"exact_match": 100.0 * sum(exact.values()) / len(exact), "f1": 100.0 * sum(f1.values()) / len(f1),
           "total": len(exact)}
    for name, ids in (("HasAns", has), ("NoAns", no)):
        out[f"{name}_exact"] = 100.0 * sum(exact[q] for q in ids) / len(ids)
        out[f"{name}_f1"] = 100.0 * sum(f1[q] for q in ids) / len(ids)
        out[f"{name}_total"] = len(ids)
    return out


def _ref_v1_f1(prediction, ground_truth):
    """evaluate-v1.1.py's f1_score: no overlap gives 0, even when both sides normalise to nothing."""
    prediction_tokens = _ref_normalize(prediction).split()
    ground_truth_tokens = _ref_normalize(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def _ref_v1(golds, preds):
    """evaluate-v1.1.py's evaluate(): max over golds, mean over questions, in percent."""
    exact = sum(max(float(_ref_normalize(p) == _ref_normalize(g)) for g in gs) for p, gs in zip(preds, golds))
    f1 = sum(max(_ref_v1_f1(p, g) for g in gs) for p, gs in zip(preds, golds))
    return {"exact_match": 100.0 * exact / len(preds), "f1": 100.0 * f1 / len(preds)}


# ---- prediction sets -------------------------------------------------------------------------------
def _prediction_sets(examples, seed=0):
    rng = random.Random(seed)
    gold = [ex.answers[0].text if ex.answers else "" for ex in examples]

    def perturb(text):
        words = text.split()
        r = rng.random()
        if not words or r < 0.2:
            return text.upper() + "."
        if r < 0.5:
            return " ".join(words[:-1])  # drop the last word
        if r < 0.8:
            return "the " + text + " " + rng.choice(["area", "of it", "!"])
        return rng.choice(["", "a an the", text[::-1]])

    def random_span(ex):
        words = ex.context.split()
        i = rng.randrange(len(words))
        return " ".join(words[i:i + rng.randint(1, 6)])

    return {
        "gold": gold,
        "perturbed": [perturb(g) for g in gold],
        "empty": [""] * len(examples),
        "random": [random_span(ex) for ex in examples],
    }


@pytest.fixture(scope="module")
def dev_v1(shared_data):
    return load_squad(shared_data / "dev-v1.1.json.gz").examples


@pytest.fixture(scope="module")
def dev_v2(shared_data):
    return load_squad(shared_data / "dev-v2.0-subset-6articles.json").examples


@pytest.fixture
def float64_default():
    """torchmetrics' SQuAD functional accumulates in the default float dtype; float64 makes it exact
    enough to compare to 1e-9 (in float32 it drifts by ~1e-5 over 10k examples)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.mark.slow
def test_v1_matches_torchmetrics_squad_on_full_dev(dev_v1, float64_default):
    from torchmetrics.functional.text.squad import squad

    assert len(dev_v1) == 10570
    golds = [[a.text for a in ex.answers] for ex in dev_v1]
    target = [{"id": ex.id, "answers": {"text": g, "answer_start": [a.answer_start for a in ex.answers]}}
              for ex, g in zip(dev_v1, golds)]
    for name, preds in _prediction_sets(dev_v1).items():
        official = _ref_v1(golds, preds)
        ours = SquadMetrics()
        ours.update(preds, golds)
        got = ours.compute()
        em, f1 = SquadExactMatch(), SquadF1()
        em.update(preds, golds)
        f1.update(preds, golds)
        assert float(got["exact_match"]) == pytest.approx(official["exact_match"], abs=1e-9), name
        assert float(got["f1"]) == pytest.approx(official["f1"], abs=1e-9), name
        # torchmetrics scores empty answers with the v2 rule (F1 = EM), so it equals our version_2 mode;
        # the two differ only on the three dev questions whose gold answer is ".".
        reference = squad([{"id": ex.id, "prediction_text": p} for ex, p in zip(dev_v1, preds)], target)
        tm_mode = SquadMetrics(version_2=True)
        tm_mode.update(preds, golds)
        tm_got = tm_mode.compute()
        assert float(tm_got["exact_match"]) == pytest.approx(float(reference["exact_match"]), abs=1e-9), name
        assert float(tm_got["f1"]) == pytest.approx(float(reference["f1"]), abs=1e-9), name
        assert float(em.compute()) == float(got["exact_match"]) and float(f1.compute()) == float(got["f1"])
        assert int(got["total"]) == 10570 and "NoAns_total" not in got


def test_v2_matches_official_definition_on_v2_subset(dev_v2):
    golds_by_id = {ex.id: [a.text for a in ex.answers] for ex in dev_v2}
    assert sum(1 for g in golds_by_id.values() if not g) == 910
    for name, preds in _prediction_sets(dev_v2, seed=1).items():
        ours = SquadMetrics(version_2=True)
        ours.update(preds, list(golds_by_id.values()))
        got = {k: float(v) for k, v in ours.compute().items()}
        reference = _ref_v2(golds_by_id, dict(zip(golds_by_id, preds)))
        assert got.keys() == reference.keys(), name
        for key, value in reference.items():
            assert got[key] == pytest.approx(value, abs=1e-9), (name, key)
    # gold answers for the answerable, "" for the rest: everything right
    assert got["total"] == 1905


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
