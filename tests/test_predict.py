"""Our own QA inference (`lit_rcqa.predict`): a trained run's dev predictions reproduced exactly, scored
as train.py scored them; `answer()` over a context longer than one window, against a brute force;
questions without gold answers; one-line errors; train.py offers only the subcommands that work."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lit_rcqa.data.load import load_examples
from lit_rcqa.errors import DataError
from lit_rcqa.paths import REPO_ROOT
from tests.families import build_family

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "squad-v1.1-dev-extract.json"
WINDOWS = {"max_seq_length": 96, "doc_stride": 32, "max_query_length": 32}


def _env() -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONPATH": str(REPO_ROOT),
           "OMP_NUM_THREADS": "1"}
    env.pop("LIT_RCQA_RUN_NAME", None)
    env.pop("WANDB_SERVICE", None)
    return env


def _run(args: list[str], cwd: Path, timeout: int = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def _squad_document(paragraphs: list[tuple[str, list[tuple[str, str, str, int]]]]) -> dict:
    """SQuAD v1.1 JSON from [(context, [(id, question, answer text, answer start)])]."""
    return {"version": "1.1", "data": [{"title": "t", "paragraphs": [
        {"context": c, "qas": [{"id": i, "question": q, "answers": [{"text": a, "answer_start": s}]}
                               for i, q, a, s in qas]} for c, qas in paragraphs]}]}


def write_squad_files(folder: Path) -> tuple[Path, Path]:
    """Small SQuAD-format train and dev files: from the committed dev extract where it exists (long
    Wikipedia paragraphs, several windows each), else from the synthetic set in SQuAD form."""
    if FIXTURE.exists():
        data = json.loads(FIXTURE.read_text())
        paragraphs = [p for article in data["data"] for p in article["paragraphs"]]
        train_doc = {"version": "1.1", "data": [{"title": "train", "paragraphs": paragraphs[:4]}]}
        dev_doc = {"version": "1.1", "data": [{"title": "dev", "paragraphs": paragraphs[4:7]}]}
    else:
        from lit_rcqa.data.synthetic import make_synthetic_splits

        train, dev = make_synthetic_splits(24, 16, seed=5)

        def doc(examples):
            return _squad_document([(ex.context, [(ex.id, ex.question, ex.answers[0].text,
                                                   ex.answers[0].answer_start)]) for ex in examples])

        train_doc, dev_doc = doc(train), doc(dev)
    train_path, dev_path = folder / "train.json", folder / "dev.json"
    train_path.write_text(json.dumps(train_doc))
    dev_path.write_text(json.dumps(dev_doc))
    return train_path, dev_path


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> dict[str, Path]:
    """train.py (a few steps) on SQuAD-format files with a tiny BERT: the run folder and its dev file."""
    root = tmp_path_factory.mktemp("predict")
    model = build_family("bert", root / "tiny-bert")
    train_file, dev_file = write_squad_files(root)
    args = [str(REPO_ROOT / "train.py"), "--model.model_name_or_path", str(model), "--run.name", "r",
            "--run.logger", "none", "--trainer.max_steps", "4", "--trainer.max_epochs", "1",
            "--trainer.enable_progress_bar", "false", "--model.learning_rate", "1e-3",
            "--data.train_file", str(train_file), "--data.dev_file", str(dev_file), "--data.batch_size", "8",
            "--data.eval_batch_size", "8", "--model.max_answer_length", "12", "--model.n_best", "7",
            *(f"--data.{k}={v}" for k, v in WINDOWS.items())]
    result = _run(args, root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {"run": root / "runs" / "r", "dev": dev_file, "root": root}


def test_predict_cli_reproduces_the_runs_predictions_and_metrics(trained_run, tmp_path):
    run, dev = trained_run["run"], trained_run["dev"]
    result = _run(["-m", "lit_rcqa.predict", "--model", str(run / "model"), "--data", str(dev), "--out",
                   str(tmp_path / "predictions.json")], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "config.yaml" in result.stdout  # the run's settings were used
    ours = json.loads((tmp_path / "predictions.json").read_text())
    theirs = json.loads((run / "predictions.json").read_text())
    assert ours == theirs
    assert json.loads((tmp_path / "nbest_predictions.json").read_text()) == \
        json.loads((run / "nbest_predictions.json").read_text())
    # several windows per context were needed: the dev file really exercises the windowing
    from transformers import AutoTokenizer

    from lit_rcqa.data.features import FeatureConfig, build_features

    examples = load_examples(dev).examples
    features = build_features(examples, AutoTokenizer.from_pretrained(run / "model"), FeatureConfig(**WINDOWS),
                              training=False)
    assert len(features) > len(examples)
    # scored by the evaluate CLI: the EM/F1 train.py reported
    scored = _run(["-m", "lit_rcqa.evaluate", str(dev), str(tmp_path / "predictions.json")], tmp_path)
    assert scored.returncode == 0, scored.stderr
    metrics = json.loads(scored.stdout)
    reported = json.loads((run / "metrics.json").read_text())
    assert metrics["exact_match"] == pytest.approx(reported["exact_match"], abs=1e-9)
    assert metrics["f1"] == pytest.approx(reported["f1"], abs=1e-9)
    assert reported["total"] == len(examples)  # evaluate-v1.1 prints no total: metrics.json's is the count


def _brute_force_best_span(model, tokenizer, question: str, context: str, max_seq_length: int, doc_stride: int,
                           max_answer_length: int) -> str:
    """The best span over every window, by exhaustive search: each window scored alone through the
    model (no batching, no padding), every (start, end) pair of context tokens with start <= end <
    start + max_answer_length, a start counted only in the window giving it most context (Google
    BERT's rule, by brute force in character space)."""
    import torch

    enc = tokenizer(question, context, truncation="only_second", max_length=max_seq_length, stride=doc_stride,
                    return_overflowing_tokens=True, return_offsets_mapping=True)
    windows = []
    for w in range(len(enc["input_ids"])):
        ctx = [k for k, s in enumerate(enc.sequence_ids(w)) if s == 1]
        windows.append((w, ctx, [tuple(enc["offset_mapping"][w][k]) for k in ctx]))

    def most_context(offset) -> int:
        best, best_score = None, None
        for w, ctx, offs in windows:
            if offset in offs:
                j = offs.index(offset)
                score = min(j, len(ctx) - 1 - j) + 0.01 * len(ctx)
                if best_score is None or score > best_score:
                    best, best_score = w, score
        return best

    best_text, best_score = None, -np.inf
    for w, ctx, offs in windows:
        inputs = {k: torch.tensor([enc[k][w]]) for k in tokenizer.model_input_names}
        with torch.no_grad():
            out = model(**inputs)
        start, end = out.start_logits[0].numpy(), out.end_logits[0].numpy()
        for a in range(len(ctx)):
            if most_context(offs[a]) != w:
                continue
            for b in range(a, min(len(ctx), a + max_answer_length)):
                score = start[ctx[a]] + end[ctx[b]]
                if score > best_score:
                    best_text, best_score = context[offs[a][0]:offs[b][1]], score
    return best_text


def test_answer_over_a_context_longer_than_one_window_matches_predict_and_a_brute_force(trained_run, tmp_path):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from lit_rcqa.predict import answer

    model_dir = trained_run["run"] / "model"
    examples = load_examples(trained_run["dev"]).examples
    example = max(examples, key=lambda ex: len(ex.context))
    small = {"max_seq_length": 48, "doc_stride": 16}
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    n_tokens = len(tokenizer(example.context, add_special_tokens=False)["input_ids"])
    assert n_tokens > 2 * small["max_seq_length"]  # the context needs several windows
    result = answer(str(model_dir), example.question, example.context, n_best=200, **small)
    assert result.text and example.context[result.start:result.end] == result.text
    assert 0 < result.probability <= 1 and np.isfinite(result.score)
    # the same question through the CLI (run's other settings, same windows)
    doc = _squad_document([(example.context, [(example.id, example.question, example.answers[0].text,
                                                example.answers[0].answer_start)])])
    (tmp_path / "one.json").write_text(json.dumps(doc))
    cli = _run(["-m", "lit_rcqa.predict", "--model", str(model_dir), "--data", str(tmp_path / "one.json"),
                "--out", str(tmp_path / "p.json"), "--n-best", "200", "--max-seq-length", "48", "--doc-stride", "16"],
               tmp_path)
    assert cli.returncode == 0, cli.stderr
    assert json.loads((tmp_path / "p.json").read_text()) == {example.id: result.text}
    # an exhaustive search over all windows and spans finds the same answer
    model = AutoModelForQuestionAnswering.from_pretrained(model_dir).eval()
    expected = _brute_force_best_span(model, tokenizer, example.question.lstrip(), example.context,
                                      small["max_seq_length"], small["doc_stride"], max_answer_length=12)
    assert result.text == expected
    # a loaded model object (with its tokenizer) gives the same answer as the folder
    again = answer(model, example.question, example.context, n_best=200, tokenizer=tokenizer, max_answer_length=12,
                   **small)
    assert again.text == result.text and again.start == result.start


def test_questions_without_gold_answers_load_for_prediction_only(tmp_path):
    context = "Ada Vellin founded the Orrick Guild in 1921."
    squad = {"data": [{"title": "t", "paragraphs": [{"context": context, "qas": [
        {"id": "a", "question": "Who founded the guild?"},
        {"id": "b", "question": "When?", "answers": [{"text": "1921", "answer_start": 39}]}]}]}]}
    duorc = [{"id": "m", "title": "M", "plot": context, "qa": [{"id": "c", "question": "Who founded it?"},
                                                                {"id": "d", "question": "When?", "answers": ["1921"],
                                                                 "no_answer": False}]}]
    for name, doc in (("squad.json", squad), ("duorc.json", duorc)):
        path = tmp_path / name
        path.write_text(json.dumps(doc))
        loaded = load_examples(path, mode="predict").examples
        assert [ex.answers for ex in loaded] == [(), (loaded[1].answers[0],)]
        assert loaded[1].answers[0].answer_start == 39 and not any(ex.is_impossible for ex in loaded)
        with pytest.raises(DataError, match="field '(answers|no_answer)': missing"):
            load_examples(path, mode="eval")
    # given answers are still checked when predicting
    squad["data"][0]["paragraphs"][0]["qas"][1]["answers"][0]["answer_start"] = 3
    (tmp_path / "bad.json").write_text(json.dumps(squad))
    with pytest.raises(DataError, match="answer_start"):
        load_examples(tmp_path / "bad.json", mode="predict")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_family("roberta", tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def questions_file(tmp_path) -> Path:
    path = tmp_path / "q.json.gz"  # gzip, no answers: questions to answer
    path.write_bytes(gzip.compress(json.dumps({"data": [{"title": "t", "paragraphs": [
        {"context": "Ada Vellin founded the Orrick Guild in 1921.", "qas": [{"id": "a", "question": "Who?"}]}]}]})
        .encode()))
    return path


@pytest.mark.parametrize("case, fragment", [
    ("no_model", "no/such/model"),
    ("no_data", "missing.json"),
    ("bad_data", "bad.json"),
    ("exists", "already exists"),
    ("stride", "doc-stride"),
    ("flag", "--n-best"),
    ("out_folder", "does not exist"),
    ("run_config", "config.yaml: max_seq_length must be a whole number, got nan"),
])
def test_bad_inputs_end_in_one_line_and_exit_2_writing_nothing(case, fragment, tiny_model, questions_file, tmp_path,
                                                               capsys):
    from lit_rcqa.predict import main

    out = tmp_path / "out.json"
    args = ["--model", str(tiny_model), "--data", str(questions_file), "--out", str(out)]
    if case == "no_model":
        args[1] = "/no/such/model"
    elif case == "no_data":
        args[3] = str(tmp_path / "missing.json")
    elif case == "bad_data":
        (tmp_path / "bad.json").write_text('{"data": [{"title": "t", "paragraphs": [{"qas": []}]}]}')
        args[3] = str(tmp_path / "bad.json")
    elif case == "exists":
        out.write_text("keep me")
    elif case == "stride":
        args += ["--max-seq-length", "64", "--doc-stride", "64"]
    elif case == "flag":
        args += ["--n-best", "many"]
    elif case == "out_folder":
        args[5] = str(tmp_path / "nowhere" / "out.json")
    elif case == "run_config":  # the run's config.yaml beside model/ holds a value no window can take
        (tmp_path / "run").mkdir()
        os.symlink(tiny_model, tmp_path / "run" / "model")
        (tmp_path / "run" / "config.yaml").write_text("data:\n  max_seq_length: .nan\n")
        args[1] = str(tmp_path / "run" / "model")
    with pytest.raises(SystemExit) if case == "flag" else _no_raise() as raised:
        code = main(args)
    if case == "flag":
        code = raised.value.code
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and fragment in lines[0], err
    assert "Traceback" not in err
    if case == "exists":
        assert out.read_text() == "keep me" and not (tmp_path / "nbest_out.json").exists()
    else:
        assert not out.exists() and not (tmp_path / "nbest_out.json").exists()


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_predict_without_gold_answers_and_a_run_folder(tiny_model, questions_file, tmp_path, capsys):
    from lit_rcqa.predict import main

    run = tmp_path / "run"
    run.mkdir()
    os.symlink(tiny_model, run / "model")
    out = tmp_path / "answers.json"
    assert main(["--model", str(run), "--data", str(questions_file), "--out", str(out)]) == 0
    assert "default settings" in capsys.readouterr().out  # no config.yaml beside model/
    predictions = json.loads(out.read_text())
    nbest = json.loads((tmp_path / "nbest_answers.json").read_text())
    assert list(predictions) == ["a"] and predictions["a"] == nbest["a"][0]["text"]
    assert set(nbest["a"][0]) == {"text", "probability", "start_logit", "end_logit", "feature_index", "start_token",
                                  "end_token", "start_char", "end_char"}


def test_train_py_offers_only_the_subcommands_that_work(tmp_path):
    help_text = _run([str(REPO_ROOT / "train.py"), "--help"], tmp_path, timeout=120)
    assert help_text.returncode == 0
    assert "{fit,validate}" in help_text.stdout and "predict" not in help_text.stdout.split("options:")[0]
    for sub in ("test", "predict"):
        result = _run([str(REPO_ROOT / "train.py"), sub], tmp_path, timeout=120)
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert f"unknown subcommand {sub!r}" in lines[0] and "lit_rcqa.predict" in lines[0]


def test_answer_gives_the_empty_answer_when_the_null_score_wins(tiny_model):
    from lit_rcqa.predict import answer

    context = "Ada Vellin founded the Orrick Guild in 1921 in the town of Mesk."
    span = answer(str(tiny_model), "Who founded the guild?", context, max_seq_length=32, doc_stride=8)
    assert span.text and context[span.start:span.end] == span.text
    # v2: "" whenever null - best span > threshold; a threshold far below any difference makes null win
    null = answer(str(tiny_model), "Who founded the guild?", context, version_2=True, null_threshold=-1e9,
                  max_seq_length=32, doc_stride=8)
    assert (null.text, null.start, null.end) == ("", -1, -1) and 0 < null.probability <= 1
    with pytest.raises(TypeError, match="max_len"):
        answer(str(tiny_model), "Who?", context, max_len=3)
