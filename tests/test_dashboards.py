"""W&B dashboards from the offline run files: train.py's model artifact, learning-rate and throughput curves, a
quiet console; analyze.py's lineage, per-example table, layer-stepped figures, resolved config and artifact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.wandb_records import RunFile, artifact_metadata, artifact_paths, media, run_file

WARMUP_RATIO = 0.5
PEAK_LR = 1e-3


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """train.py on a tiny BERT with the W&B logger (offline): (working folder, run folder, the finished process)."""
    from tests.test_train import base_args, train
    from tests.tiny_run import make_tiny_run

    root = tmp_path_factory.mktemp("dash")
    start = make_tiny_run(root / "start")  # a tiny model + tokenizer to fine-tune from
    result = train(base_args(start / "model", "d1", "--run.logger", "wandb", "--model.warmup_ratio",
                             str(WARMUP_RATIO), "--trainer.log_every_n_steps", "50"), root)
    assert result.returncode == 0, result.stdout + result.stderr
    return root, root / "runs" / "d1", result


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
    # offline, the files are read at `wandb sync` time: from where they are, whatever the folder it runs in
    assert all(Path(e.local_path) == (run / e.path).resolve() for e in artifact.manifest.contents)
    assert any(r.WhichOneof("record_type") == "stats" for r in records.records)  # system metrics are on


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
    root, run, result = trained
    for noise in ("Tip:", "litlogger", "litmodels", "wandb:", "LeafSpec", "GPU available", "Writing model shards"):
        assert noise not in result.stdout + result.stderr, noise
    tail = result.stdout.strip().splitlines()[-3:]
    sync_dir = next(run.glob("wandb/offline-run-*")).relative_to(root)
    assert tail[-2].split() == ["run", "directory", "runs/d1"], tail
    assert tail[-1].split() == ["tracker", "wandb", "sync", str(sync_dir)], tail


@pytest.fixture(scope="module")
def analysed(trained):
    """analyze.py on the trained run with the W&B logger (offline): (run folder, analysis folder, stdout)."""
    from tests.test_analyze import analyze

    root, run, _ = trained
    result = analyze(["--run", "runs/d1", "--layers", "all", "--num-examples", "4", "--steps", "8",
                      "--hidden-examples", "2", "--logger", "wandb", "--no-progress"], root)
    assert result.returncode == 0, result.stdout + result.stderr
    return run, run / "analysis", result.stdout


def test_analysis_run_names_the_model_artifact_it_explained(analysed):
    run, out, _ = analysed
    model = RunFile(run_file(run)).artifact("model")
    records = RunFile(run_file(out))
    (wandb_run,) = records.runs
    assert (wandb_run.run_group, wandb_run.job_type) == ("d1", "analysis")
    lineage = {"name": "model-d1", "type": "model", "digest": model.digest}
    config = records.config
    assert config["model_artifact"] == lineage
    assert config["run"] == "runs/d1" and config["out"] == "runs/d1/analysis"  # resolved, not null
    assert config["training_run"]["tracker_id"] == "d1" and config["training_run"]["name"] == "d1"
    assert config["ig"]["steps"] == 8 and config["ig"]["method"] == "gausslegendre"
    analysis = records.artifact("analysis")
    assert analysis.name == "analysis-d1"
    assert artifact_metadata(analysis)["model_artifact"] == lineage
    shards = sorted(p.relative_to(out).as_posix() for p in (out / "scores").iterdir() if not p.name.startswith("."))
    paths = artifact_paths(analysis)
    assert shards and set(shards) <= set(paths) and "manifest.json" in paths, paths
    assert {"tables/examples.csv", "tables/roles.csv", "report.html"} <= set(paths)
    assert records.use_artifacts == []  # offline: W&B refuses use_artifact; the config holds the link instead


def test_the_per_example_table_is_the_stored_records(analysed):
    from lit_rcqa.attribution import store

    _, out, _ = analysed
    records = RunFile(run_file(out))
    (row,) = records.rows_with("analysis/tables/examples")
    value = media(row, "analysis/tables/examples")
    assert value["_type"] == "table-file"
    table = json.loads((run_file(out).parent / "files" / value["path"]).read_text())
    stored = list(store.load(out).values())
    layers = stored[0].layers
    assert table["columns"][:7] == ["id", "question", "prediction", "gold", "em", "f1", "confidence"]
    assert table["columns"][7:] == [f"{kind}/{n}" for kind in ("completeness_gap", "flip", "top_words")
                                    for n in layers]
    assert len(table["data"]) == len(stored) == 4
    for values, record in zip(table["data"], stored):
        row = dict(zip(table["columns"], values))
        assert (row["id"], row["question"], row["prediction"]) == (record.example_id, record.question,
                                                                   record.pred_text)
        assert row["gold"] == " | ".join(record.gold_texts)
        assert [row[f"completeness_gap/{n}"] for n in layers] == pytest.approx(list(record.delta), rel=1e-12)
        assert all(isinstance(row[f"flip/{n}"], bool) for n in layers)
        for n in layers:  # k = 5 words of the passage, most important first
            words = row[f"top_words/{n}"].split(", ")
            assert 1 <= len(words) <= 5 and all(w in record.context for w in words), (n, words)


def test_per_layer_figures_are_one_key_with_one_step_per_layer(analysed):
    from lit_rcqa.attribution import store

    _, out, _ = analysed
    records = RunFile(run_file(out))
    layers = next(iter(store.load(out).values())).layers
    keys = sorted({"/".join(k.split("/")[:3]) for h in records.history for k in h if k.startswith("analysis/tsne/")})
    assert len(keys) == 2, keys  # --hidden-examples 2: one key per example
    for key in keys + ["analysis/highlights_by_layer"]:
        rows = records.rows_with(key)
        assert all(media(h, key)["_type"] in ("image-file", "html-file") for h in rows), key
        assert [h["analysis/layer_index"] for h in rows] == list(range(len(layers))), key
        assert [h["_step"] for h in rows] == sorted({h["_step"] for h in rows}), key


def test_report_html_loads_nothing_from_outside_itself(analysed):
    import re

    _, out, _ = analysed
    page = (out / "report.html").read_text(encoding="utf-8")
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)


def test_analysis_console_ends_with_the_sync_command(analysed):
    _, out, stdout = analysed
    sync_dir = next(out.glob("wandb/offline-run-*"))
    assert stdout.strip().splitlines()[-1].split() == ["tracker:", "wandb", "sync",
                                                       sync_dir.relative_to(out.parents[2]).as_posix()]
