"""`python analyze.py`: one-line errors, kill -9 and resume, 2-rank DDP, and train.py -> analyze.py end to end."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from analyze import main  # the root script's: it passes the app's IG callbacks
from lit_rcqa.attribution import store
from lit_rcqa.paths import REPO_ROOT
from tests.tiny_run import make_tiny_run

FAST = ["--analyses", "none", "--logger", "none", "--no-progress"]


def analyze(args: list[str], cwd: Path, *, wait: bool = True, timeout: int = 400):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONPATH": str(REPO_ROOT),
           "OMP_NUM_THREADS": "1"}  # the same threads in every process: bitwise comparable scores
    env.pop("WANDB_SERVICE", None)  # never attach to another test's in-process W&B service
    cmd = [sys.executable, str(REPO_ROOT / "analyze.py"), *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@contextmanager
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def assert_same_records(a: Path, b: Path) -> None:
    ra, rb = store.load(a), store.load(b)
    assert list(ra) == list(rb)
    for ex_id, x in ra.items():
        y = rb[ex_id]
        assert (x.tokens, x.pred_start, x.pred_end, x.layers) == (y.tokens, y.pred_start, y.pred_end, y.layers)
        for name in ("importance", "signed", "delta", "steps", "offsets", "input_ids"):
            np.testing.assert_array_equal(getattr(x, name), getattr(y, name), err_msg=f"{ex_id} {name}")


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory):
    """A tiny run with 4 examples already scored into <run>/analysis."""
    root = tmp_path_factory.mktemp("scored")
    run = make_tiny_run(root / "runs" / "tiny")
    assert main(["--run", str(run), "--num-examples", "4", "--steps", "8", *FAST]) == 0
    return run


def one_error_line(capsys, rc: int) -> str:
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith("analyze.py: error: ")
    return lines[0]


@pytest.mark.parametrize("args, fragment", [
    (["--layers", "0,7"], "layer 7 out of range"),
    (["--layers", "layer_x"], "unknown layer 'layer_x'"),
    (["--steps", "1"], "steps >= 2"),
    (["--method", "simpson"], "unknown integration rule 'simpson'"),
    (["--analyses", "jsd,nope"], "unknown analyses ['nope']"),
    (["--num-examples", "zero"], "num_examples"),
])
def test_bad_flags_are_one_line_and_write_nothing(tmp_path, capsys, args, fragment):
    run = make_tiny_run(tmp_path / "runs" / "tiny")
    line = one_error_line(capsys, main(["--run", str(run), *FAST, *args]))  # the last flag wins
    assert fragment in line
    assert not (run / "analysis").exists()


def test_missing_or_unfinished_runs_are_one_line(tmp_path, capsys, monkeypatch):
    assert "run not found: " in one_error_line(capsys, main(["--run", str(tmp_path / "nope"), *FAST]))
    monkeypatch.chdir(tmp_path)
    assert "no complete training run in runs/" in one_error_line(capsys, main(FAST))
    run = make_tiny_run(tmp_path / "runs" / "tiny")
    (run / "run.json").write_text(json.dumps({"kind": "fit", "status": "running"}))
    assert "no complete training run" in one_error_line(capsys, main(FAST))
    assert "is not complete (status: running)" in one_error_line(capsys, main(["--run", str(run), *FAST]))


def test_a_corrupt_shard_is_one_line_naming_it(scored_run, tmp_path, capsys):
    run = tmp_path / "tiny"
    shutil.copytree(scored_run, run)
    tensors = sorted((run / "analysis" / "scores").glob("*-r00.safetensors"))[0]
    tensors.write_bytes(tensors.read_bytes()[:100])
    line = one_error_line(capsys, main(["--run", str(run), "--num-examples", "4", "--steps", "8", *FAST]))
    assert "corrupt IG shard" in line and tensors.name in line


def test_other_settings_for_the_same_out_are_refused_naming_the_keys(scored_run, tmp_path, capsys):
    run = tmp_path / "tiny"
    shutil.copytree(scored_run, run)
    before = sorted(p.name for p in (run / "analysis" / "scores").iterdir())
    line = one_error_line(capsys, main(["--run", str(run), "--num-examples", "4", "--steps", "9",
                                        "--target", "logit", *FAST]))
    assert "different settings (ig.steps, ig.target)" in line and "--out" in line
    assert sorted(p.name for p in (run / "analysis" / "scores").iterdir()) == before
    # The same settings resume (nothing left to do); --skip-ig reuses the shards.
    assert main(["--run", str(run), "--num-examples", "4", "--steps", "8", *FAST]) == 0
    assert main(["--run", str(run), "--skip-ig", "--steps", "99", *FAST]) == 0
    assert "no IG results in" in one_error_line(capsys, main(["--run", str(run), "--skip-ig", "--out",
                                                              str(tmp_path / "empty"), *FAST]))


@pytest.mark.slow
def test_kill_9_mid_run_then_rerun_equals_an_uninterrupted_run(tmp_path):
    run = make_tiny_run(tmp_path / "runs" / "tiny", dev_size=12)
    args = ["--run", str(run), "--num-examples", "12", "--steps", "200", "--batch-size", "1", *FAST]
    proc = analyze([*args, "--out", "killed"], tmp_path, wait=False)
    scores = tmp_path / "killed" / "scores"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and len(list(scores.glob("*.json"))) < 3:
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be killed: " + proc.stdout.read()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_with = store.finished_ids(tmp_path / "killed")
    assert 3 <= len(killed_with) < 12
    resumed = analyze([*args, "--out", "killed"], tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"({12 - len(killed_with)} computed now" in resumed.stdout
    with one_thread():  # the reference in-process, with the subprocesses' thread count
        assert main([*args, "--out", str(tmp_path / "straight")]) == 0
    assert_same_records(tmp_path / "killed", tmp_path / "straight")
    ids = [ex["id"] for p in sorted(scores.glob("*.json")) for ex in json.loads(p.read_text())["examples"]]
    assert len(ids) == len(set(ids)) == 12  # no duplicated or missing ids on disk either
    assert not list(scores.glob(".*"))  # no temp files left


@pytest.mark.slow
@pytest.mark.ddp
def test_two_rank_ddp_gives_the_same_scores_as_one_rank(tmp_path):
    run = make_tiny_run(tmp_path / "runs" / "tiny", dev_size=7)
    common = ["--run", str(run), "--num-examples", "7", "--steps", "16", "--batch-size", "2",
              "--hidden-examples", "3", *FAST]
    ddp = analyze([*common, "--out", "ddp", "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu"], tmp_path)
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    with one_thread():
        assert main([*common, "--out", str(tmp_path / "single")]) == 0
    names = {p.name for p in (tmp_path / "ddp" / "scores").glob("*.json")}
    assert any(n.endswith("-r00.json") for n in names) and any(n.endswith("-r01.json") for n in names)
    assert_same_records(tmp_path / "ddp", tmp_path / "single")
    hidden_ddp, hidden_single = store.load_hidden(tmp_path / "ddp"), store.load_hidden(tmp_path / "single")
    assert list(hidden_ddp) == list(hidden_single) and len(hidden_ddp) == 3
    for ex_id in hidden_single:
        np.testing.assert_array_equal(hidden_ddp[ex_id], hidden_single[ex_id])


@pytest.mark.slow
def test_train_then_analyze_writes_figures_tables_report_and_a_wandb_run(tmp_path):
    from tests.test_train import base_args, train

    model_dir = tmp_path / "tiny-model"
    make_tiny_run(model_dir)  # a tiny model + tokenizer in model_dir/model to fine-tune from
    result = train(base_args(model_dir / "model", "t1", "--run.logger", "none", "--data.synthetic_dev_size", "10"),
                   tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    done = analyze(["--layers", "all", "--num-examples", "6", "--steps", "10", "--hidden-examples", "4",
                    "--logger", "wandb", "--no-progress"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "runs" / "t1" / "analysis"
    assert "median completeness gap δ per layer: embeddings" in done.stdout
    assert "report: runs/t1/analysis/report.html" in done.stdout
    figures = {p.name for p in (out / "figures").glob("*.png")}
    tables = {p.name for p in (out / "tables").glob("*.csv")}
    assert any(f.startswith("jsd_") for f in figures) and any(f.startswith("tsne") for f in figures), figures
    assert {"roles.csv", "flips.csv", "completeness.csv", "quantifiers.csv"} <= tables, tables
    assert "Jensen" in (out / "report.html").read_text(encoding="utf-8")
    assert (out / "analyze_config.yaml").is_file() and (out / "manifest.json").is_file()
    (wandb_run,) = (out / "wandb").glob("offline-run-*")
    media = {p.relative_to(wandb_run / "files" / "media").as_posix()
             for p in (wandb_run / "files" / "media").rglob("*") if p.is_file()}
    assert any(m.startswith("images/") for m in media) and any(m.endswith(".table.json") for m in media), media
