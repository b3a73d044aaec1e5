"""W&B dashboards from the offline run files: train.py's model artifact, learning-rate and throughput curves, a
quiet console; analyze.py's lineage, per-example table, layer-stepped figures, resolved config and artifact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.wandb_records import RunFile, artifact_metadata, artifact_paths, run_file

WARMUP_RATIO = 0.5
PEAK_LR = 1e-3


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """train.py on a tiny BERT with the W&B logger (offline): (working folder, run folder, stdout+stderr)."""
    from tests.test_train import base_args, train
    from tests.tiny_run import make_tiny_run

    root = tmp_path_factory.mktemp("dash")
    start = make_tiny_run(root / "start")  # a tiny model + tokenizer to fine-tune from
    result = train(base_args(start / "model", "d1", "--run.logger", "wandb", "--model.warmup_ratio",
                             str(WARMUP_RATIO), "--trainer.log_every_n_steps", "50"), root)
    assert result.returncode == 0, result.stdout + result.stderr
    return root, root / "runs" / "d1", result.stdout + result.stderr


def test_training_run_holds_a_model_artifact_named_in_run_json(trained):
    _, run, _ = trained
    records = RunFile(run_file(run))
    artifact = records.artifact("model")
    assert artifact.name == "model-d1"
    paths = artifact_paths(artifact)
    for name in ("model/config.json", "model/model.safetensors", "model/tokenizer.json", "metrics.json",
                 "predictions.json", "nbest_predictions.json"):
        assert name in paths, paths
    status = json.loads((run / "run.json").read_text())
    assert status["tracker"]["model_artifact"] == {"name": "model-d1", "type": "model", "digest": artifact.digest}
    assert status["tracker"]["mode"] == "offline" and status["tracker"]["location"].startswith("wandb sync ")
    (wandb_run,) = records.runs
    assert (wandb_run.run_group, wandb_run.job_type) == ("d1", "train")
    metrics = json.loads((run / "metrics.json").read_text())
    assert records.summary["final/f1"] == pytest.approx(metrics["f1"])
    assert records.summary["final/exact_match"] == pytest.approx(metrics["exact_match"])
    assert records.summary["train/windows_per_s"] > 0 and records.summary["train/tokens_per_s"] > 0


def test_learning_rate_is_logged_at_every_step_of_the_warm_up(trained):
    _, run, _ = trained
    rows = [h for h in RunFile(run_file(run)).history if any(k.startswith("lr-") for k in h)]
    steps = [h["trainer/global_step"] for h in rows]
    total = steps[-1] + 1          # one epoch: the last logged step is the last one
    warmup = int(WARMUP_RATIO * total)
    assert steps == list(range(total))  # every step, although log_every_n_steps is 50
    key = sorted(k for k in rows[0] if k.startswith("lr-"))[0]
    # transformers' linear schedule: peak × step / warm-up steps while warming up, then a linear decay
    expected = [PEAK_LR * s / warmup if s < warmup else PEAK_LR * (total - s) / (total - warmup) for s in steps]
    np.testing.assert_allclose([h[key] for h in rows], expected, rtol=1e-6)


def test_training_console_is_quiet_and_ends_with_where_things_are(trained):
    root, run, output = trained
    for noise in ("Tip:", "litlogger", "litmodels", "wandb:", "LeafSpec", "GPU available", "Writing model shards"):
        assert noise not in output, noise
    tail = output.strip().splitlines()[-3:]
    sync_dir = next(run.glob("wandb/offline-run-*")).relative_to(root)
    assert tail[-2].split() == ["run", "directory", "runs/d1"], tail
    assert tail[-1].split() == ["tracker", "wandb", "sync", str(sync_dir)], tail
