"""`python -m lit_rcqa.evaluate`: SQuAD v1.1, v2.0, DuoRC ("NA"), missing predictions, bad inputs."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pytest

from lit_rcqa.evaluate import main


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _write(path, obj):
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def v1_doc(shared_data):
    with gzip.open(shared_data / "dev-v1.1.json.gz", "rt", encoding="utf-8") as fh:
        return json.load(fh)


def _qas(doc):
    return [qa for art in doc["data"] for par in art["paragraphs"] for qa in par["qas"]]


def test_v1_gold_predictions_score_100_and_missing_ones_count_as_wrong(capsys, tmp_path, shared_data, v1_doc):
    qas = _qas(v1_doc)
    preds = {qa["id"]: qa["answers"][0]["text"] for qa in qas}
    code, out, err = _run(capsys, shared_data / "dev-v1.1.json.gz", _write(tmp_path / "p.json", preds))
    assert code == 0 and err == ""
    assert json.loads(out) == {"exact_match": 100.0, "f1": 100.0, "total": 10570}
    # drop 1057 predictions and spoil the rest in a known way: they count as 0, with a warning
    for qa in qas[:1057]:
        del preds[qa["id"]]
    code, out, err = _run(capsys, shared_data / "dev-v1.1.json.gz", _write(tmp_path / "p.json", preds))
    result = json.loads(out)
    assert code == 0 and result["total"] == 10570
    assert result["exact_match"] == pytest.approx(100.0 * (10570 - 1057) / 10570)
    assert err.count("\n") == 1 and "1057" in err and "warning" in err


def test_v2_reports_has_and_no_answer_split(capsys, tmp_path, shared_data):
    doc = json.loads((shared_data / "dev-v2.0-subset-6articles.json").read_text(encoding="utf-8"))
    qas = _qas(doc)
    # answer every answerable question right, and say "no answer" to none of the unanswerable ones
    preds = {qa["id"]: (qa["answers"][0]["text"] if qa["answers"] else qa["plausible_answers"][0]["text"])
             for qa in qas}
    code, out, _ = _run(capsys, shared_data / "dev-v2.0-subset-6articles.json", _write(tmp_path / "p.json", preds))
    result = json.loads(out)
    assert code == 0
    assert result["total"] == 1905 and result["HasAns_total"] == 995 and result["NoAns_total"] == 910
    assert result["HasAns_exact"] == 100.0 and result["NoAns_exact"] == 0.0 and result["NoAns_f1"] == 0.0
    assert result["exact_match"] == pytest.approx(100.0 * 995 / 1905)


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


@pytest.mark.parametrize("case", ["missing_data", "missing_preds", "bad_json", "list", "non_string",
                                  "bad_dataset", "empty_file"])
def test_user_errors_exit_2_with_one_line(capsys, tmp_path, case):
    good_data = _write(tmp_path / "d.json", {"version": "1.1", "data": [{"title": "T", "paragraphs": [
        {"context": "Denver won.", "qas": [{"id": "q", "question": "Who won?",
                                            "answers": [{"text": "Denver", "answer_start": 0}]}]}]}]})
    good_preds = _write(tmp_path / "p.json", {"q": "Denver"})
    data, preds = good_data, good_preds
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
    code, out, err = _run(capsys, data, preds)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err


def test_module_entry_point_exit_code(tmp_path):
    """The real process: exit code 2 and a single stderr line (no traceback) for a missing file."""
    data = _write(tmp_path / "d.json", {"version": "1.1", "data": []})
    bad = subprocess.run([sys.executable, "-m", "lit_rcqa.evaluate", str(data), str(tmp_path / "x.json")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
