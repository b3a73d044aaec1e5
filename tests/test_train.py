"""`python train.py` end to end on a tiny model: outputs, errors, DDP, answering with the saved model, W&B offline
(resume: test_resume.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lit_rcqa.paths import REPO_ROOT

TINY_DATA = ["--data.synthetic_train_size", "48", "--data.synthetic_dev_size", "24", "--data.batch_size", "8",
             "--data.eval_batch_size", "16", "--data.max_seq_length", "128", "--data.doc_stride", "48"]



def train(args: list[str], cwd: Path, *, timeout: int = 300, env_extra: dict | None = None, wait: bool = True):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONPATH": str(REPO_ROOT),
           "OMP_NUM_THREADS": "1", **(env_extra or {})}
    env.pop("LIT_RCQA_RUN_NAME", None)
    # An in-process W&B run of another test exports WANDB_SERVICE; a child attached to that service
    # would have its run file written asynchronously by it. Each command must own its tracker.
    env.pop("WANDB_SERVICE", None)
    # The child starts with default SIGINT/SIGTERM, as a shell starts a foreground job, even when this test run
    # was started with them ignored (a background job of a non-interactive shell ignores SIGINT): a small
    # trampoline resets them and exec's train.py in the same process (same pid). No preexec_fn: the test
    # process may have threads.
    cmd = [sys.executable, "-c", DEFAULT_STOP_SIGNALS_THEN_EXEC, sys.executable, str(REPO_ROOT / "train.py"), *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


DEFAULT_STOP_SIGNALS_THEN_EXEC = ("import os, signal, sys\n"
                                  "for s in (signal.SIGINT, signal.SIGTERM):\n"
                                  "    signal.signal(s, signal.SIG_DFL)\n"
                                  "os.execv(sys.argv[1], sys.argv[1:])\n")


def base_args(model_dir: Path, name: str, *extra: str) -> list[str]:
    return ["--model.model_name_or_path", str(model_dir), "--model.learning_rate", "1e-3", "--run.name", name,
            "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false", *TINY_DATA, *extra]


@pytest.fixture(scope="module")
def fitted(tiny_model_dir, tmp_path_factory):
    """One tiny fit run (post-processing settings away from the defaults): (its folder, the command's result)."""
    cwd = tmp_path_factory.mktemp("fit")
    result = train(base_args(tiny_model_dir, "r1", "--run.logger", "csv", "--model.n_best", "7",
                             "--model.max_answer_length", "12"), cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return cwd / "runs" / "r1", result


def test_fit_writes_a_complete_run(fitted):
    run, result = fitted
    status = json.loads((run / "run.json").read_text())
    assert status["status"] == "complete" and status["kind"] == "fit"
    for name in ("config.yaml", "predictions.json", "nbest_predictions.json", "metrics.json",
                 "checkpoints/best.ckpt", "checkpoints/last.ckpt", "model/config.json", "model/tokenizer.json"):
        assert (run / name).exists(), name
    predictions = json.loads((run / "predictions.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(predictions) == 24 == metrics["total"]
    assert 0 <= metrics["exact_match"] <= metrics["f1"] <= 100
    nbest = json.loads((run / "nbest_predictions.json").read_text())
    first = next(iter(nbest.values()))
    assert abs(sum(e["probability"] for e in first) - 1) < 1e-4 and {"start_logit", "end_logit"} <= set(first[0])
    assert "r1" in result.stdout and "F1" in result.stdout  # the closing summary names the run


def test_a_runs_settings_are_read_back_by_the_parser_that_wrote_them(fitted, tiny_model_dir):
    from lit_rcqa.cli import read_run_config
    from lit_rcqa.data.datamodule import QADataModule
    from lit_rcqa.evaluation.postprocess import PostprocessSettings

    data, post = read_run_config(fitted[0])
    assert post == PostprocessSettings(n_best=7, max_answer_length=12, version_2=False, null_threshold=0.0)
    # TINY_DATA's values, what the command line set; the rest as configs/default.yaml and the signature say
    assert (data["synthetic_train_size"], data["synthetic_dev_size"], data["batch_size"], data["eval_batch_size"],
            data["max_seq_length"], data["doc_stride"]) == (48, 24, 8, 16, 128, 48)
    assert data["tokenizer_name"] == str(tiny_model_dir)  # linked to model.model_name_or_path, as in training
    QADataModule(**data)  # exactly the constructor's keyword arguments


def edited_config(run: Path, dest: Path, edit) -> Path:
    """A copy of the run folder's config.yaml and run.json with `edit(config dict)` applied."""
    import yaml

    dest.mkdir()
    config = yaml.safe_load((run / "config.yaml").read_text())
    edit(config)
    (dest / "config.yaml").write_text(yaml.safe_dump(config))
    (dest / "run.json").write_text((run / "run.json").read_text())
    return dest


@pytest.mark.parametrize("edit, key", [
    (lambda c: c["model"].update(n_best=-3), "model.n_best"),
    (lambda c: c["data"].update(max_seq_len=100), "max_seq_len"),
    (lambda c: c["run"].update(logger="paper"), "run.logger"),
])
def test_a_bad_field_in_a_runs_config_is_one_error_naming_the_file_and_key(fitted, tmp_path, edit, key):
    from lit_rcqa.cli import read_run_config
    from lit_rcqa.errors import UserError

    folder = edited_config(fitted[0], tmp_path / "edited", edit)
    with pytest.raises(UserError) as err:
        read_run_config(folder)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(folder / "config.yaml")) and key in message, message


def test_a_key_an_older_config_lacks_takes_the_signatures_default(fitted, tmp_path):
    from lit_rcqa.cli import read_run_config

    def drop(config):
        del config["data"]["skip_invalid"], config["model"]["null_threshold"]
        config["data"]["max_query_length"] = 20

    data, post = read_run_config(edited_config(fitted[0], tmp_path / "old", drop))
    assert data["skip_invalid"] is False and post.null_threshold == 0.0 and data["max_query_length"] == 20


def test_validate_recomputes_the_saved_metrics(tiny_model_dir, tmp_path):
    assert train(base_args(tiny_model_dir, "fit1", "--run.logger", "none"), tmp_path).returncode == 0
    fit_metrics = json.loads((tmp_path / "runs/fit1/metrics.json").read_text())
    result = train(["validate", "--config", "runs/fit1/config.yaml", "--run.name", "val1",
                    "--ckpt_path", fit_metrics["checkpoint"]], tmp_path)
    assert result.returncode == 0, result.stderr
    val_metrics = json.loads((tmp_path / "runs/val1/metrics.json").read_text())
    assert val_metrics["f1"] == pytest.approx(fit_metrics["f1"], abs=1e-9)
    assert val_metrics["exact_match"] == pytest.approx(fit_metrics["exact_match"], abs=1e-9)


@pytest.mark.parametrize("args, fragment", [
    (["--model.learning_rate", "-1"], "learning_rate"),
    (["--model.no_such_key", "1"], "no_such_key"),
    (["--data.train_file", "missing.json", "--data.dev_file", "missing.json"], "missing.json"),
    (["--model.model_name_or_path", "/no/such/model"], "/no/such/model"),
    (["--data.train_file", "$NO_SUCH_VARIABLE_X/train.json", "--data.dev_file", "x.json"], "NO_SUCH_VARIABLE_X"),
    (["--data.doc_stride", "400"], "doc_stride"),
    (["--data.max_seq_length", "40", "--data.doc_stride", "30"], "doc_stride (30)"),
    (["validate", "--ckpt_path", "runs/none/best.ckpt"], "runs/none/best.ckpt"),
])
def test_bad_configuration_is_one_line_and_leaves_no_complete_run(tmp_path, args, fragment):
    if args[0] == "validate":
        args = [args[0], "--run.name", "bad", "--run.logger", "none", *args[1:]]
    else:
        args = ["--run.name", "bad", "--run.logger", "none", *args]
    result = train(args, tmp_path, timeout=120)
    assert result.returncode == 2
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    status = tmp_path / "runs" / "bad" / "run.json"
    assert not status.exists() or json.loads(status.read_text())["status"] != "complete"


@pytest.mark.parametrize("relative", [True, False])
def test_a_run_name_cannot_escape_the_runs_folder(tmp_path, relative):
    (tmp_path / "cwd").mkdir()
    name = "../../escape" if relative else str(tmp_path / "absolute")
    result = train(["--run.name", name, "--run.logger", "none"], tmp_path / "cwd", timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "--run.name" in lines[0] and name in lines[0], result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd"] and not any((tmp_path / "cwd").iterdir())


def evil_checkpoint(path: Path) -> Path:
    """A checkpoint file that is not weights-only: unpickling it would build an arbitrary object."""
    import argparse

    torch.save({"state_dict": {}, "payload": argparse.Namespace(x=1)}, path)
    return path


@pytest.mark.parametrize("kind", ["evil", "missing", "not_a_checkpoint", "tensor"])
def test_a_bad_checkpoint_is_one_line(tiny_model_dir, tmp_path, kind):
    path = tmp_path / f"{kind}.ckpt"
    if kind == "evil":
        evil_checkpoint(path)
    elif kind == "not_a_checkpoint":
        path.write_text("hello")
    elif kind == "tensor":
        torch.save(torch.zeros(3), path)
    result = train(base_args(tiny_model_dir, "c1", "--run.logger", "none", "--ckpt_path", str(path)), tmp_path,
                   timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and str(path) in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs" / "c1").exists()  # refused before a run folder is made


def test_a_rejected_data_file_leaves_no_run_folder(tiny_model_dir, tmp_path):
    from tests.data.test_squad import squad_doc

    doc = squad_doc()
    doc["data"][0]["paragraphs"][0]["qas"][1]["answers"][0]["answer_start"] = 3  # does not index "12"
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    result = train(base_args(tiny_model_dir, "bad", "--run.logger", "none", "--data.train_file", "bad.json",
                             "--data.dev_file", "bad.json"), tmp_path, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "bad.json" in lines[0] and "'q2'" in lines[0], result.stderr
    assert not (tmp_path / "runs" / "bad").exists()


def test_saved_model_is_a_standard_hf_folder_that_answers(tiny_model_dir, tmp_path):
    assert train(base_args(tiny_model_dir, "p1", "--run.logger", "none"), tmp_path).returncode == 0
    from transformers import AutoModelForQuestionAnswering

    from lit_rcqa.predict import answer

    saved = tmp_path / "runs/p1/model"
    assert type(AutoModelForQuestionAnswering.from_pretrained(saved)).__name__ == "BertForQuestionAnswering"
    context = "Ada Vellin founded the Orrick Guild in 1921 in the town of Mesk."
    result = answer(str(saved), "Who founded the Orrick Guild?", context)
    assert result.text and context[result.start:result.end] == result.text
    assert 0 < result.probability <= 1


def test_wandb_offline_run_holds_the_logged_metrics(tiny_model_dir, tmp_path):
    result = train(base_args(tiny_model_dir, "w1", "--run.logger", "wandb", "--trainer.log_every_n_steps", "2"),
                   tmp_path)
    assert result.returncode == 0, result.stderr
    from tests.wandb_records import wandb_values

    assert len(list((tmp_path / "runs/w1/wandb").glob("offline-run-*"))) == 1
    history, summary = wandb_values(tmp_path / "runs/w1")
    metrics = json.loads((tmp_path / "runs/w1/metrics.json").read_text())
    last_val = [row for row in history if "val/f1" in row][-1]  # the best checkpoint, scored once more
    assert last_val["val/f1"] == pytest.approx(metrics["f1"], rel=1e-6)  # logged as float32
    assert last_val["val/em"] == pytest.approx(metrics["exact_match"], rel=1e-6, abs=1e-6)
    assert any("train/loss" in row and row["train/loss"] > 0 for row in history)
    assert summary["final/f1"] == metrics["f1"] and summary["final/total"] == metrics["total"] == 24


@pytest.mark.slow
@pytest.mark.ddp
def test_two_process_ddp_matches_single_process_evaluation(tiny_model_dir, tmp_path):
    args = base_args(tiny_model_dir, "d1", "--run.logger", "none", "--trainer.accelerator", "cpu",
                     "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.max_steps", "4")
    result = train(args, tmp_path, timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    ddp_metrics = json.loads((tmp_path / "runs/d1/metrics.json").read_text())
    assert ddp_metrics["total"] == 24
    single = train(["validate", "--config", "runs/d1/config.yaml", "--run.name", "s1", "--trainer.devices", "1",
                    "--trainer.strategy", "auto", "--ckpt_path", ddp_metrics["checkpoint"]], tmp_path)
    assert single.returncode == 0, single.stdout + single.stderr
    single_metrics = json.loads((tmp_path / "runs/s1/metrics.json").read_text())
    assert single_metrics["total"] == 24
    assert single_metrics["exact_match"] == ddp_metrics["exact_match"]
    assert single_metrics["f1"] == ddp_metrics["f1"]
    assert ddp_metrics["f1"] > 0  # not a 0 == 0 match: the predictions overlap the gold answers
