"""The benches import, and the cheapest pieces run at a toy size (no timing assertions)."""

from __future__ import annotations

import importlib
import math

import pytest

BENCH_MODULES = ["bench.result", "bench.bench_metrics", "bench.bench_train", "bench.bench_memory", "bench.bench_generic",
                 "bench.__main__"]


@pytest.mark.parametrize("name", BENCH_MODULES)
def test_bench_modules_import(name):
    module = importlib.import_module(name)
    assert name == "bench.result" or callable(module.main)


def test_metrics_bench_on_50_questions(shared_data):
    from bench import bench_metrics
    from bench.__main__ import summary_table

    out = bench_metrics.main(["--questions", "50", "--rounds", "1", "--data", str(shared_data / "dev-v1.1.json.gz")])
    assert out["skipped"] is None and out["details"]["questions"] == 50
    assert out["details"]["max_abs_diff_float64"] <= 1e-9
    (r,) = out["rows"]
    assert r["ratio"] > 0 and math.isfinite(r["ratio"])
    assert "EM/F1 metric" in summary_table([out])


def test_metrics_bench_skips_without_data(tmp_path):
    from bench import bench_metrics

    out = bench_metrics.main(["--data", str(tmp_path / "missing.json")])
    assert out["rows"] == [] and "not found" in out["skipped"]


def test_reference_train_labels_match_ours(shared_data, tokenizer):
    """run_qa.py-style labels (the Trainer side) and our build_features label the same tokens."""
    from bench.bench_train import prepare_train_features
    from lit_rcqa.data.features import FeatureConfig, build_features
    from lit_rcqa.data.squad import load_squad

    examples = load_squad(shared_data / "train-v1.1-subset-44articles.json").examples[:40]
    ours = build_features(examples, tokenizer, FeatureConfig(max_seq_length=128, doc_stride=48), training=True)
    rows = prepare_train_features(examples, tokenizer, 128, 48, pad_to_max_length=False)
    assert [r["input_ids"] for r in rows] == ours.input_ids
    assert [(r["start_positions"], r["end_positions"]) for r in rows] == list(zip(ours.start_positions, ours.end_positions))


def test_epoch_padding_orders_the_samplers():
    from bench.bench_train import Settings, epoch_padding

    lengths = [50 + (i * 37) % 300 for i in range(640)]
    pads = epoch_padding(lengths, Settings(batch_size=16))
    assert pads["ours"]["pad_share"] < pads["trainer_dynamic_unsorted"]["pad_share"]
    assert pads["trainer_dynamic_unsorted"]["pad_share"] < pads["trainer_run_qa_defaults"]["pad_share"]
