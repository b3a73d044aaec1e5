"""`python -m lit_rcqa.evaluate` is a drop-in for the official scripts: the same stdout (keys, values,
layout) as the transcriptions of evaluate-v1.1.py / evaluate-v2.0.py, the same options, each script's
own missing-prediction message; plus DuoRC ("NA") and one-line errors for bad inputs."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from lit_rcqa.evaluate import main
from tests.evaluation import official_evaluate_v11 as official_v11
from tests.evaluation import official_evaluate_v20 as official_v20
from tests.evaluation.squad_docs import held_out_style_v2, make_doc, prediction_sets, questions, real_devs


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _official(capsys, script, *argv):
    """The transcription's main: (stdout, stderr)."""
    script.main([str(a) for a in argv])
    return capsys.readouterr()


def _write(path, obj):
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def _restricted(doc, preds):
    """The document without the questions that have no prediction."""
    keep = {qa["id"] for qa in questions(doc) if qa["id"] in preds}
    out = json.loads(json.dumps(doc))
    for article in out["data"]:
        for par in article["paragraphs"]:
            par["qas"] = [qa for qa in par["qas"] if qa["id"] in keep]
    return out


# The real dev sets: the committed extracts in every clone, the full files where present.
_EXTRACT_AND_FULL = ["extract", "full"]
_EXTRACT_AND_FULL_SLOW = ["extract", pytest.param("full", marks=pytest.mark.slow)]  # full v1.1 dev: 10570 questions


@pytest.fixture(scope="module")
def real(request):
    """(v1.1 dev, v2.0 dev) as RealDev: the extracts, or the full files (skipped where absent)."""
    return real_devs(request.param, request)


@pytest.fixture(scope="module")
def v1(real):
    return real[0], real[0].read()


@pytest.fixture(scope="module")
def v2(real):
    return real[1], real[1].read()


# ---- v1.1 ------------------------------------------------------------------------------------------
_V1_GOLDS = [("dot", [".", "Denver Broncos"]), ("plain", ["Broncos"]), ("two", ["cat dog", "the cat"]),
             ("gone", ["Carolina"])]


def test_v1_drop_in_hand_built(capsys, tmp_path):
    """"." golds kept (so "" is an exact match), a missing prediction scored 0 with the script's own
    line on stderr, an extra prediction ignored: stdout and stderr as evaluate-v1.1.py's."""
    data = _write(tmp_path / "d.json", make_doc(_V1_GOLDS, version="1.1"))
    preds = _write(tmp_path / "p.json", {"dot": "", "plain": "the Broncos", "two": "dog", "extra": "x"})
    code, out, err = _run(capsys, data, preds)
    want_out, want_err = _official(capsys, official_v11, data, preds)
    assert code == 0 and (out, err) == (want_out, want_err)
    assert json.loads(out) == {"exact_match": 50.0, "f1": pytest.approx(100 * (0 + 1 + 2 / 3 + 0) / 4)}
    assert err == "Unanswered question gone will receive score 0.\n"


@pytest.mark.parametrize("real", _EXTRACT_AND_FULL_SLOW, indirect=True)
def test_v1_real_dev_gold_and_spoiled_predictions(capsys, tmp_path, v1):
    facts, doc = v1
    plain = _write(tmp_path / "dev-v1.1.json", doc)  # the official script reads plain JSON; ours also the .gz
    qas = questions(doc)
    n, n_dropped = facts.questions, facts.questions // 10
    assert len(qas) == n
    preds = {qa["id"]: qa["answers"][0]["text"] for qa in qas}
    path = _write(tmp_path / "p.json", preds)
    code, out, err = _run(capsys, facts.path, path)
    assert code == 0 and err == "" and out == _official(capsys, official_v11, plain, path)[0]
    assert json.loads(out) == {"exact_match": 100.0, "f1": 100.0}
    # Spoil them in known ways: drop the first tenth, empty every 7th, reverse every 5th, add a word to
    # every 3rd. The official script and ours must agree on every digit, and the scores must fall.
    for i, qa in enumerate(qas):
        if i < n_dropped:
            del preds[qa["id"]]
        elif i % 7 == 0:
            preds[qa["id"]] = ""
        elif i % 5 == 0:
            preds[qa["id"]] = preds[qa["id"]][::-1]
        elif i % 3 == 0:
            preds[qa["id"]] += " indeed"
    path = _write(tmp_path / "p.json", preds)
    code, out, err = _run(capsys, facts.path, path)
    want_out, want_err = _official(capsys, official_v11, plain, path)
    assert code == 0 and out == want_out and err == want_err
    result = json.loads(out)
    assert err.count("\n") == n_dropped and err.startswith(f"Unanswered question {qas[0]['id']} will receive score 0.")
    assert result["exact_match"] < 100.0 * (n - n_dropped) / n - 20  # the spoilt ones count: ~50 points lost
    assert result["f1"] < 100.0 * (n - n_dropped) / n - 10


# ---- v2.0 ------------------------------------------------------------------------------------------
_V2_GOLDS = [("dot", [".", "Denver"]), ("only_dot", ["."]), ("plain", ["Denver Broncos"]),
             ("two", ["cat dog", "the cat dog bird"]), ("na1", []), ("na2", []), ("na3", [])]
_V2_PREDS = {"dot": "", "only_dot": "", "plain": "Broncos", "two": "cat", "na1": "", "na2": "something",
             "na3": " ", "extra": "not in the data"}
_V2_PROBS = {"dot": 0.9, "only_dot": 0.2, "plain": 0.4, "two": 0.4, "na1": 0.7, "na2": 0.3, "na3": 0.95,
             "extra": 0.0}


@pytest.mark.parametrize("options", [[], ["-n", "probs"], ["-n", "probs", "-t", "0.5"], ["-t", "-1"],
                                     ["--na-prob-file", "probs", "--na-prob-thresh", "0.35", "-v"],
                                     ["-n", "probs", "-t", "0.0"]])
def test_v2_drop_in_hand_built(capsys, tmp_path, options):
    """"." golds dropped, no-answer questions, an extra prediction, a whitespace answer, thresholds
    and best thresholds: stdout character for character as evaluate-v2.0.py's."""
    data = _write(tmp_path / "d.json", make_doc(_V2_GOLDS))
    preds = _write(tmp_path / "p.json", _V2_PREDS)
    probs = _write(tmp_path / "probs.json", _V2_PROBS)
    argv = [data, preds] + [probs if o == "probs" else o for o in options]
    code, out, err = _run(capsys, *argv)
    assert code == 0 and err == ""
    assert out == _official(capsys, official_v20, *argv)[0]
    result = json.loads(out)
    assert list(result)[:9] == ["exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total",
                                "NoAns_exact", "NoAns_f1", "NoAns_total"]
    assert ("best_f1_thresh" in result) == ("probs" in options)


def test_v2_scores_by_hand(capsys, tmp_path):
    """Independent of any transcription: the numbers of the hand-built case, worked out on paper."""
    data = _write(tmp_path / "d.json", make_doc(_V2_GOLDS))
    preds = _write(tmp_path / "p.json", _V2_PREDS)
    probs = _write(tmp_path / "probs.json", _V2_PROBS)
    _, out, _ = _run(capsys, data, preds, "-n", probs, "-t", "0.5")
    result = json.loads(out)
    # Raw EM: dot 0 ("" vs "Denver"), only_dot 1 ("" vs [""]), plain 0, two 0, na1 1, na2 0, na3 1 (" " is "").
    # Raw F1: plain 2/3 (Broncos vs Denver Broncos), two 2/3 (cat vs cat dog), others as EM.
    # Above 0.5 (dot 0.9, na1 0.7, na3 0.95) the answer is "": dot 0 (answerable), na1 1, na3 1.
    assert result["exact"] == pytest.approx(100 * 3 / 7) and result["total"] == 7
    assert result["f1"] == pytest.approx(100 * (3 + 4 / 3) / 7)
    assert result["HasAns_exact"] == pytest.approx(100 * 1 / 4) and result["NoAns_exact"] == pytest.approx(100 * 2 / 3)
    # Best threshold for EM: start at 3 (all "no answer": the three unanswerable right), then answer in
    # increasing probability: only_dot 0.2 (+1 = 4), na2 0.3 (-1 = 3), plain 0.4 (+0), two 0.4 (+0),
    # na1 0.7 ("" : +0), dot 0.9 (+0), na3 0.95 (" " is a non-empty string: -1). Best 4 at 0.2.
    assert result["best_exact"] == pytest.approx(100 * 4 / 7) and result["best_exact_thresh"] == 0.2
    # F1: 3, +1 = 4 (0.2), -1 = 3 (0.3), +2/3 (0.4), +2/3 = 13/3 at 0.4 (two), then +0, +0, -1.
    assert result["best_f1"] == pytest.approx(100 * (13 / 3) / 7) and result["best_f1_thresh"] == 0.4


def test_v2_missing_predictions_are_left_out_of_every_total(capsys, tmp_path):
    """evaluate-v2.0.py prints "Missing prediction for <id>", leaves it out of the scores, then stops
    with a KeyError in the HasAns/NoAns split; ours finishes with what the script gives on the
    predicted questions alone, and says which ones are missing on stderr."""
    doc = make_doc(_V2_GOLDS)
    data = _write(tmp_path / "d.json", doc)
    preds = {k: v for k, v in _V2_PREDS.items() if k not in ("plain", "na1")}
    pred_path = _write(tmp_path / "p.json", preds)
    probs = _write(tmp_path / "probs.json", _V2_PROBS)
    with pytest.raises(KeyError):
        official_v20.main([str(data), str(pred_path)])
    assert capsys.readouterr().out == "Missing prediction for plain\nMissing prediction for na1\n"
    restricted = _write(tmp_path / "restricted.json", _restricted(doc, preds))
    for options in ([], ["-n", probs], ["-n", probs, "-t", "0.5"]):
        code, out, err = _run(capsys, data, pred_path, *options)
        assert code == 0 and err == "Missing prediction for plain\nMissing prediction for na1\n"
        assert out == _official(capsys, official_v20, restricted, pred_path, *options)[0]
        result = json.loads(out)
        assert result["total"] == 5 and result["HasAns_total"] == 3 and result["NoAns_total"] == 2


@pytest.mark.parametrize("declared", ["2.0", "v2.0"])
@pytest.mark.parametrize("options", [[], ["-n", "probs"], ["-n", "probs", "-t", "0.5"], ["-o", "out"]])
def test_v2_file_with_only_answerable_questions_is_scored_as_v2(capsys, tmp_path, declared, options):
    """A file that declares v2.0 is scored by evaluate-v2.0.py's rules even when every question is
    answerable ("." golds dropped, v2 keys) and takes that script's options; the released v2 dev file
    says "v2.0"."""
    doc = make_doc([("q", [".", "Denver"]), ("r", ["Broncos"])], version="2.0")
    doc["version"] = declared
    if declared == "v2.0":  # the declared version alone, without any is_impossible field
        for qa in questions(doc):
            del qa["is_impossible"]
    data = _write(tmp_path / "d.json", doc)
    preds = _write(tmp_path / "p.json", {"q": "", "r": "Broncos"})
    probs = _write(tmp_path / "probs.json", {"q": 0.7, "r": 0.2})
    swap = {"probs": probs, "out": tmp_path / "ours.json"}
    code, out, err = _run(capsys, data, preds, *[swap.get(o, o) for o in options])
    assert code == 0 and err == "", err
    if "out" in options:
        theirs = tmp_path / "theirs.json"
        _official(capsys, official_v20, data, preds, "-o", theirs)
        out, want = (tmp_path / "ours.json").read_text(), theirs.read_text()
    else:
        want = _official(capsys, official_v20, data, preds, *[swap.get(o, o) for o in options])[0]
    assert out == want
    result = json.loads(out)
    # By hand: "" against "Denver" ("." dropped) is wrong, "Broncos" right: 50 / 50, two answerable.
    if "-t" not in options:
        assert (result["exact"], result["f1"], result["total"], result["HasAns_total"]) == (50.0, 50.0, 2, 2)
    assert "NoAns_total" not in result


@pytest.mark.parametrize("real", _EXTRACT_AND_FULL, indirect=True)
def test_v2_real_dev_with_na_probs(capsys, tmp_path, v2):
    """The real v2 set, na_prob.json as train.py writes it ({id: probability}) with ties, and thresholds."""
    facts, doc = v2
    n, n_na = facts.questions, facts.unanswerable
    rng = random.Random(5)
    data = facts.path
    for name, preds in prediction_sets(doc, seed=6).items():
        if name == "random":
            for qid in list(preds)[::9]:
                preds[qid] = ""  # some abstentions
        probs = {qid: rng.choice([0.05, 0.5, 0.5, rng.random()]) for qid in preds}  # ties on purpose
        pred_path, prob_path = _write(tmp_path / "p.json", preds), _write(tmp_path / "na_prob.json", probs)
        for options in ([], ["--na-prob-file", prob_path], ["--na-prob-file", prob_path, "-t", "0.5"]):
            code, out, err = _run(capsys, data, pred_path, *options)
            assert code == 0 and err == ""
            assert out == _official(capsys, official_v20, data, pred_path, *options)[0], (name, options)
        result = json.loads(out)
        assert result["total"] == n and result["NoAns_total"] == n_na and "best_f1_thresh" in result
        if name == "empty":  # answering nothing: only the unanswerable are right, whatever the threshold
            assert result["exact"] == result["best_exact"] == pytest.approx(100 * n_na / n)


@pytest.mark.parametrize("real", _EXTRACT_AND_FULL, indirect=True)
def test_held_out_style_v2_with_dot_golds_equals_evaluate_v20(capsys, tmp_path, v2, v1):
    """A v2 set with "." golds: our EM and F1 are the official script's, digit for digit."""
    doc = held_out_style_v2(v2[1], v1[1], dot_questions=v1[0].dot_questions)
    data = _write(tmp_path / "held_out.json", doc)
    for name, preds in prediction_sets(doc, seed=8).items():
        pred_path = _write(tmp_path / "p.json", preds)
        code, out, err = _run(capsys, data, pred_path)
        assert code == 0 and err == ""
        want = _official(capsys, official_v20, data, pred_path)[0]
        assert out == want, name
        assert json.loads(out)["exact"] == json.loads(want)["exact"]  # exactly, as floats


def test_out_file_is_what_the_official_script_writes(capsys, tmp_path):
    data = _write(tmp_path / "d.json", make_doc(_V2_GOLDS))
    preds = _write(tmp_path / "p.json", _V2_PREDS)
    probs = _write(tmp_path / "probs.json", _V2_PROBS)
    ours_file, theirs_file = tmp_path / "ours.json", tmp_path / "theirs.json"
    ours_file.write_text("old scores", encoding="utf-8")  # replaced, as the script replaces it
    code, out, err = _run(capsys, data, preds, "-n", probs, "-o", ours_file)
    assert code == 0 and out == "" and err == ""
    _official(capsys, official_v20, data, preds, "-n", probs, "--out-file", theirs_file)
    assert ours_file.read_text(encoding="utf-8") == theirs_file.read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


# ---- DuoRC -------------------------------------------------------------------------------------------
def test_duorc_na_means_no_answer(capsys, tmp_path):
    duorc = [{"id": "m1", "title": "Film", "plot": "Anna flies to Paris with her brother Tom in 1999.",
              "qa": [{"id": "a", "question": "Where does Anna fly?", "answers": ["Paris"], "no_answer": False},
                     {"id": "b", "question": "Who is Tom's wife?", "answers": [], "no_answer": True},
                     {"id": "c", "question": "When?", "answers": ["in 1999", "1999"], "no_answer": False}]}]
    data = _write(tmp_path / "SelfRC_dev.json", duorc)
    preds = _write(tmp_path / "p.json", {"a": "to Paris", "b": "NA", "c": "NA"})
    code, out, _ = _run(capsys, data, preds)
    result = json.loads(out)
    assert code == 0 and result["total"] == 3
    assert result["NoAns_exact"] == 100.0 and result["HasAns_exact"] == 0.0
    assert result["HasAns_f1"] == pytest.approx(100.0 * (2 / 3) / 2)  # "to Paris" vs "Paris": F1 2/3
    probs = _write(tmp_path / "na.json", {"a": 0.1, "b": 0.9, "c": 0.2})
    code, out, _ = _run(capsys, data, preds, "-n", probs)
    # best EM: 1 ("b" right), answer "a" (+0), "c" ("NA" is no answer: +0): best 1 at threshold 0.0
    assert code == 0 and json.loads(out)["best_exact"] == pytest.approx(100 / 3)


# ---- bad inputs --------------------------------------------------------------------------------------
_V1_DATA = {"version": "1.1", "data": [{"title": "T", "paragraphs": [
    {"context": "Denver won.", "qas": [{"id": "q", "question": "Who won?",
                                        "answers": [{"text": "Denver", "answer_start": 0}]}]}]}]}


@pytest.mark.parametrize("case", ["missing_data", "missing_preds", "bad_json", "list", "non_string",
                                  "bad_dataset", "empty_file", "no_questions", "unknown_flag", "bad_thresh",
                                  "nan_thresh", "image_dir", "v1_na_prob", "v1_out_file", "v1_thresh",
                                  "na_missing", "na_bad_json", "na_list", "na_string", "na_bool", "na_nan",
                                  "na_lacks_id", "no_matching_prediction", "out_dir_missing", "out_is_input"])
def test_user_errors_exit_2_with_one_line(capsys, tmp_path, case):
    v2 = case.startswith(("na_", "no_matching", "out_", "nan_", "bad_thresh", "image"))
    data = _write(tmp_path / "d.json", make_doc(_V2_GOLDS) if v2 else _V1_DATA)
    preds = _write(tmp_path / "p.json", _V2_PREDS if v2 else {"q": "Denver"})
    probs = tmp_path / "probs.json"
    _write(probs, _V2_PROBS)
    extra = []
    if case == "missing_data":
        data = tmp_path / "nope.json"
    elif case == "missing_preds":
        preds = tmp_path / "nope.json"
    elif case == "bad_json":
        preds.write_text('{"q": "Denver"', encoding="utf-8")
    elif case == "list":
        preds = _write(tmp_path / "p.json", ["Denver"])
    elif case == "non_string":
        preds = _write(tmp_path / "p.json", {"q": 3})
    elif case == "bad_dataset":
        data = _write(tmp_path / "d.json", {"data": [{"title": "T", "paragraphs": [{"context": "x", "qas": [
            {"id": "q", "question": "?", "answers": [{"text": "Denver", "answer_start": 0}]}]}]}]})
    elif case == "empty_file":
        data.write_text("", encoding="utf-8")
    elif case == "no_questions":
        data = _write(tmp_path / "d.json", {"version": "1.1", "data": []})
    elif case == "unknown_flag":
        extra = ["--na-prob-threshold", "0.5"]
    elif case == "bad_thresh":
        extra = ["-t", "high"]
    elif case == "nan_thresh":
        extra = ["-t", "nan"]
    elif case == "image_dir":
        extra = ["-n", probs, "-p", tmp_path / "images"]
    elif case == "v1_na_prob":
        extra = ["--na-prob-file", probs]
    elif case == "v1_out_file":
        extra = ["-o", tmp_path / "out.json"]
    elif case == "v1_thresh":
        extra = ["-t", "1.0"]
    elif case.startswith("na_"):
        extra = ["-n", probs]
        if case == "na_missing":
            extra = ["-n", tmp_path / "nope.json"]
        elif case == "na_bad_json":
            probs.write_text("{", encoding="utf-8")
        elif case == "na_list":
            _write(probs, [0.5])
        elif case == "na_string":
            _write(probs, {**_V2_PROBS, "dot": "0.5"})
        elif case == "na_bool":
            _write(probs, {**_V2_PROBS, "dot": True})
        elif case == "na_nan":
            probs.write_text(json.dumps(_V2_PROBS)[:-1] + ', "na1": NaN}', encoding="utf-8")
        elif case == "na_lacks_id":
            _write(probs, {k: v for k, v in _V2_PROBS.items() if k != "two"})
    elif case == "no_matching_prediction":
        preds = _write(tmp_path / "p.json", {"other": "x"})
    elif case == "out_dir_missing":
        extra = ["-o", tmp_path / "no" / "such" / "dir" / "out.json"]
    elif case == "out_is_input":
        extra = ["-o", preds]
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    code, out, err = _run(capsys, data, preds, *extra)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "error: " in err and "Traceback" not in err, err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before  # nothing written


def test_module_entry_point_exit_code(tmp_path):
    """The real process: exit code 2 and a single stderr line (no traceback) for a missing file."""
    data = _write(tmp_path / "d.json", _V1_DATA)
    bad = subprocess.run([sys.executable, "-m", "lit_rcqa.evaluate", str(data), str(tmp_path / "x.json")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
