"""`python train.py` on data files: SQuAD v1.1, SQuAD v2.0 (no-answer questions, na_prob.json) and DuoRC,
small files written here from the synthetic generator; records left out are counted on stderr, in the
tracker and in metrics.json; the W&B offline run file holds the logged values (read record by record).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lit_rcqa.data.synthetic import make_synthetic_splits
from tests.evaluation.official_evaluate_v20 import evaluate as official_v2
from tests.test_train import base_args, train
from tests.wandb_records import wandb_values

TRAIN, DEV = make_synthetic_splits(40, 12, seed=3)
FILE_ARGS = ["--data.train_file", "train.json", "--data.dev_file", "dev.json"]


def squad_document(examples, *, no_answer_every: int = 0) -> dict:
    """One article per example; with `no_answer_every` = k, every k-th question is unanswerable (v2.0)."""
    articles = []
    for i, ex in enumerate(examples):
        qa = {"id": ex.id, "question": ex.question,
              "answers": [{"text": a.text, "answer_start": a.answer_start} for a in ex.answers]}
        if no_answer_every:
            qa["is_impossible"] = i % no_answer_every == 0
            if qa["is_impossible"]:
                qa["answers"] = []
        articles.append({"title": ex.title, "paragraphs": [{"context": ex.context, "qas": [qa]}]})
    return {"version": "v2.0" if no_answer_every else "1.1", "data": articles}


def duorc_document(examples) -> list:
    """One movie per example: the context is the plot, answers are free text."""
    return [{"id": f"m{i}", "title": ex.title, "plot": ex.context,
             "qa": [{"id": ex.id, "question": ex.question, "answers": [a.text for a in ex.answers],
                     "no_answer": False}]} for i, ex in enumerate(examples)]


def write(path: Path, document) -> None:
    path.write_text(json.dumps(document), encoding="utf-8")


def stderr_notes(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("train.py:")]


@pytest.mark.slow
def test_squad_v1_file(tiny_model_dir, tmp_path):  # noqa: F811
    write(tmp_path / "train.json", squad_document(TRAIN))
    write(tmp_path / "dev.json", squad_document(DEV))
    result = train(base_args(tiny_model_dir, "v1", "--run.logger", "csv", *FILE_ARGS), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    run = tmp_path / "runs" / "v1"
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(json.loads((run / "predictions.json").read_text())) == {ex.id for ex in DEV} and metrics["total"] == 12
    assert metrics["skipped"] == {"train": {}, "dev": {}} and stderr_notes(result.stderr) == []
    assert metrics["data"] == "train.json | dev.json"
    assert not (run / "na_prob.json").exists()  # v1.1 has no null answer


def test_v2_no_answer_questions_become_null_targets(tiny_model_dir, tmp_path):  # noqa: F811
    """Training keeps the unanswerable questions (`keep_no_answer`) with the CLS token as start and end."""
    from lit_rcqa.data.datamodule import QADataModule

    write(tmp_path / "train.json", squad_document(TRAIN, no_answer_every=3))
    write(tmp_path / "dev.json", squad_document(DEV, no_answer_every=3))
    data = QADataModule(train_file=str(tmp_path / "train.json"), dev_file=str(tmp_path / "dev.json"),
                        tokenizer_name=str(tiny_model_dir), keep_no_answer=True, max_seq_length=128, doc_stride=48)
    data.setup("fit")
    impossible = {ex.id for ex in data.train_examples if ex.is_impossible}
    assert len(impossible) == len(range(0, 40, 3))
    features = data.train_features
    for f, e in enumerate(features.example_index):
        at_cls = features.start_positions[f] == features.end_positions[f] == features.cls_index[f]
        if data.train_examples[e].id in impossible:
            assert at_cls


@pytest.mark.slow
def test_squad_v2_file_with_skipped_records_na_probs_and_wandb_values(tiny_model_dir, tmp_path):  # noqa: F811
    train_doc = squad_document(TRAIN, no_answer_every=3)
    train_doc["data"][1]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] += 1  # answer_mismatch
    train_doc["data"][2]["paragraphs"][0]["qas"][0]["question"] = ""  # empty_question
    dev_doc = squad_document(DEV, no_answer_every=3)
    dev_doc["data"][4]["paragraphs"][0]["qas"][0]["id"] = DEV[3].id  # duplicate_id
    write(tmp_path / "train.json", train_doc)
    write(tmp_path / "dev.json", dev_doc)
    result = train(base_args(tiny_model_dir, "v2", "--run.logger", "wandb", *FILE_ARGS,
                             "--model.version_2_with_negative", "true", "--data.keep_no_answer", "true",
                             "--data.skip_invalid", "true", "--trainer.log_every_n_steps", "1"), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    run = tmp_path / "runs" / "v2"
    # 1. What was left out, by reason: on stderr, in metrics.json, in the tracker.
    assert stderr_notes(result.stderr) == [
        "train.py: dev data: left out 1 question(s): duplicate_id 1",
        "train.py: train data: left out 2 question(s): answer_mismatch 1, empty_question 1"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["skipped"] == {"dev": {"duplicate_id": 1}, "train": {"answer_mismatch": 1, "empty_question": 1}}
    history, summary = wandb_values(run)
    assert summary["data/skipped/train/answer_mismatch"] == 1 and summary["data/skipped/dev/duplicate_id"] == 1
    # 2. The W&B run holds the values: the final validation's F1 and EM (logged in float32), the summary.
    predictions = json.loads((run / "predictions.json").read_text())
    assert metrics["total"] == len(predictions) == 11
    assert metrics["f1"] > 0  # a value check, not 0 == 0
    val_rows = [row for row in history if "val/f1" in row]
    assert val_rows[-1]["val/f1"] == pytest.approx(metrics["f1"], rel=1e-6)
    assert val_rows[-1]["val/em"] == pytest.approx(metrics["exact_match"], rel=1e-6, abs=1e-6)
    assert val_rows[-1]["val/f1_best"] == pytest.approx(max(row["val/f1"] for row in val_rows), rel=1e-6)
    losses = [row["train/loss"] for row in history if "train/loss" in row]
    assert len(losses) == max(row["trainer/global_step"] for row in history if "train/loss" in row) + 1
    assert all(math.isfinite(x) and x > 0 for x in losses)
    assert summary["final/f1"] == metrics["f1"] and summary["final/exact_match"] == metrics["exact_match"]
    # 3. na_prob.json: one probability per question; the null answer is predicted exactly where it is the
    # most probable entry of the n-best list (null_threshold 0), as evaluate-v2.0.py --na-prob-file expects.
    na_probs = json.loads((run / "na_prob.json").read_text())
    nbest = json.loads((run / "nbest_predictions.json").read_text())
    assert set(na_probs) == set(predictions)
    for qid, p in na_probs.items():
        assert 0.0 <= p <= 1.0
        best_span = max((e["probability"] for e in nbest[qid] if e["text"]), default=0.0)
        assert (predictions[qid] == "") == (p > best_span), qid
    dataset = json.loads((tmp_path / "dev.json").read_text())["data"]
    dataset[4]["paragraphs"][0]["qas"] = []  # the skipped duplicate is not scored
    official = official_v2(dataset, predictions, na_probs)
    assert official["total"] == 11 and {"best_f1", "best_exact", "HasAns_total", "NoAns_total"} <= set(official)
    assert official["NoAns_total"] == len([ex for i, ex in enumerate(DEV) if i % 3 == 0])


@pytest.mark.slow
def test_duorc_file(tiny_model_dir, tmp_path):  # noqa: F811
    train_doc = duorc_document(TRAIN)
    train_doc[0]["qa"][0]["answers"] = ["zebra crossing in Lisbon"]  # not in the plot: left out of training
    train_doc[1]["qa"][0].update(answers=[], no_answer=True)  # no answer: left out of training
    dev_doc = duorc_document(DEV)
    dev_doc[0]["qa"][0].update(answers=[], no_answer=True)  # kept for evaluation, as unanswerable
    write(tmp_path / "train.json", train_doc)
    write(tmp_path / "dev.json", dev_doc)
    result = train(base_args(tiny_model_dir, "duorc", "--run.logger", "none", *FILE_ARGS), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert stderr_notes(result.stderr) == [
        "train.py: train data: left out 2 question(s): answer_not_in_plot 1, no_answer 1"]
    run = tmp_path / "runs" / "duorc"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["skipped"] == {"dev": {}, "train": {"answer_not_in_plot": 1, "no_answer": 1}}
    assert set(json.loads((run / "predictions.json").read_text())) == {ex.id for ex in DEV}
    assert metrics["total"] == 12
