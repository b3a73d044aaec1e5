"""Stopping and resuming `train.py`: a run stopped mid-epoch (SIGTERM or SIGKILL) and resumed with
`--ckpt_path last` trains on exactly the batches an uninterrupted run trains on, in the same order, and
ends with bitwise the same weights and the same metrics (CPU, one process: every operation is
deterministic, and the checkpoint carries the random-number state, so equality is exact, not approximate).
A second train.py on a folder in use is refused; a dead run's lock is taken over with one line.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import torch

from tests.batch_recorder import read_records
from tests.test_train import base_args, train

pytestmark = pytest.mark.slow


def args_for(model_dir: Path, name: str, records: Path, *, hold_at_step: int | None = None,
             hold: Path | None = None) -> list[str]:
    recorder = {"class_path": "tests.batch_recorder.RecordBatches",
                "init_args": {"path": str(records), "hold_at_step": hold_at_step, "hold": str(hold) if hold else None}}
    # Two epochs of 20 questions' worth of steps; a checkpoint every 2 steps; dropout on (the default).
    return base_args(model_dir, name, "--run.logger", "none", "--run.save_every_n_steps", "2",
                     "--data.synthetic_train_size", "120", "--trainer.max_epochs", "2",
                     "--trainer.callbacks", json.dumps([recorder]))


def state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def wait_for_step(records: Path, step: int, proc, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(r["step"] == step for r in read_records(records)):
            return
        assert proc.poll() is None, "train.py ended early: " + proc.stdout.read()
        time.sleep(0.2)
    raise AssertionError(f"step {step} never reached")


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir, tmp_path_factory):  # noqa: F811
    cwd = tmp_path_factory.mktemp("uninterrupted")
    result = train(args_for(tiny_model_dir, "u", cwd / "u.jsonl"), cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    run = cwd / "runs" / "u"
    records = read_records(cwd / "u.jsonl")
    steps_per_epoch = sum(r["epoch"] == 0 for r in records)
    assert steps_per_epoch >= 8 and len(records) == 2 * steps_per_epoch
    # Lightning tells the sampler the epoch: the second epoch is another order of the same features.
    epochs = [[r["features"] for r in records if r["epoch"] == e] for e in (0, 1)]
    assert epochs[0] != epochs[1] and sorted(sum(epochs[0], [])) == sorted(sum(epochs[1], []))
    return {"records": records, "steps_per_epoch": steps_per_epoch, "run": run,
            "metrics": json.loads((run / "metrics.json").read_text()),
            "predictions": json.loads((run / "predictions.json").read_text())}


def assert_same_training(resumed_run: Path, records: list[dict], reference: dict) -> None:
    """Same batches in the same order, each feature once per epoch; same final weights and metrics."""
    assert records == reference["records"]
    n_features = len({f for r in reference["records"] for f in r["features"]})
    for epoch in (0, 1):
        seen = [f for r in records if r["epoch"] == epoch for f in r["features"]]
        assert sorted(seen) == list(range(n_features))  # none lost, none repeated
    ours, theirs = state(resumed_run / "checkpoints/last.ckpt"), state(reference["run"] / "checkpoints/last.ckpt")
    assert ours["global_step"] == theirs["global_step"] == 2 * reference["steps_per_epoch"]
    assert ours["state_dict"].keys() == theirs["state_dict"].keys()
    for key, value in theirs["state_dict"].items():
        assert torch.equal(ours["state_dict"][key], value), key  # bitwise
    assert ours["lr_schedulers"] == theirs["lr_schedulers"]
    metrics = json.loads((resumed_run / "metrics.json").read_text())
    for key in ("exact_match", "f1", "total"):
        assert metrics[key] == reference["metrics"][key], key
    assert json.loads((resumed_run / "predictions.json").read_text()) == reference["predictions"]


def test_sigterm_stops_at_a_batch_boundary_and_the_resumed_run_equals_an_uninterrupted_one(
        tiny_model_dir, tmp_path, uninterrupted):  # noqa: F811
    hold = tmp_path / "hold"
    hold.touch()
    records = tmp_path / "t.jsonl"
    proc = train(args_for(tiny_model_dir, "t", records, hold_at_step=5, hold=hold), tmp_path, wait=False)
    try:
        wait_for_step(records, 5, proc)
        # A second train.py on the same run folder is refused while the first is alive.
        second = train(args_for(tiny_model_dir, "t", tmp_path / "second.jsonl"), tmp_path, timeout=200)
        assert second.returncode == 2, second.stdout + second.stderr
        lines = [ln for ln in second.stderr.splitlines() if ln.strip()]
        assert lines[-1].startswith("train.py: error:") and f"in use by process {proc.pid}" in lines[-1]
        assert not any(ln.startswith("train.py:") for ln in lines[:-1]), second.stderr
        assert not (tmp_path / "second.jsonl").exists()  # it never trained
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        hold.unlink()  # let the held batch finish: the stop comes at the end of that batch
        out, _ = proc.communicate(timeout=200)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, out
    lines = out.strip().splitlines()
    assert lines[-1] == "train.py: interrupted by SIGTERM; resume with --ckpt_path last", out
    assert sum("interrupted" in ln for ln in lines) == 1 and "Traceback" not in out
    run = tmp_path / "runs" / "t"
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]  # one "last", no last-v1
    assert state(run / "checkpoints/last.ckpt")["global_step"] == 6  # the held batch was trained, then it stopped
    before = [r for r in read_records(records) if r["step"] < 6]

    resumed = tmp_path / "t-resumed.jsonl"
    result = train(args_for(tiny_model_dir, "t", resumed) + ["--ckpt_path", "last"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "taking over" not in result.stderr  # the stopped run released its lock
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert_same_training(run, before + read_records(resumed), uninterrupted)


def test_sigkill_mid_epoch_and_the_resumed_run_equals_an_uninterrupted_one(tiny_model_dir, tmp_path,
                                                                            uninterrupted):  # noqa: F811
    hold = tmp_path / "hold"
    hold.touch()
    records = tmp_path / "k.jsonl"
    at = uninterrupted["steps_per_epoch"] + 3  # in the second epoch, one step past a periodic checkpoint
    proc = train(args_for(tiny_model_dir, "k", records, hold_at_step=at, hold=hold), tmp_path, wait=False)
    try:
        wait_for_step(records, at, proc)
    finally:
        proc.kill()  # SIGKILL: no handler runs, nothing is cleaned up
        proc.wait()
    run = tmp_path / "runs" / "k"
    assert json.loads((run / "run.json").read_text())["status"] == "running"  # never mistaken for complete
    killed = state(run / "checkpoints/last.ckpt")
    killed_at = killed["global_step"]
    assert killed_at == at - 1 and killed_at % 2 == 0
    # The loader's position travels in the checkpoint, so the resumed run skips what it already trained on.
    assert killed["QADataModule"] == {
        "train_position": {"epoch": 1, "batches_done": killed_at - uninterrupted["steps_per_epoch"]}}
    before = [r for r in read_records(records) if r["step"] < killed_at]

    resumed = tmp_path / "k-resumed.jsonl"
    result = train(args_for(tiny_model_dir, "k", resumed) + ["--ckpt_path", "last"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    notices = [ln for ln in result.stderr.splitlines() if "taking over" in ln]
    assert len(notices) == 1 and str(proc.pid) in notices[0]  # the dead run's lock, taken over in one line
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert_same_training(run, before + read_records(resumed), uninterrupted)


def test_ctrl_c_stops_at_a_batch_boundary_like_sigterm(tiny_model_dir, tmp_path):  # noqa: F811
    hold = tmp_path / "hold"
    hold.touch()
    records = tmp_path / "c.jsonl"
    proc = train(args_for(tiny_model_dir, "c", records, hold_at_step=3, hold=hold), tmp_path, wait=False)
    try:
        wait_for_step(records, 3, proc)
        proc.send_signal(signal.SIGINT)
        time.sleep(1.0)
        hold.unlink()
        out, _ = proc.communicate(timeout=200)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGINT, out
    assert out.strip().splitlines()[-1] == "train.py: interrupted by SIGINT; resume with --ckpt_path last", out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
    run = tmp_path / "runs" / "c"
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert state(run / "checkpoints/last.ckpt")["global_step"] == 4  # the held batch finished, then it stopped
