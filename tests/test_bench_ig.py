"""bench_ig runs every section end to end at a toy size (a tiny BERT; no timing assertions)."""

from __future__ import annotations

import json
import math

import numpy as np

from lit_rcqa.paths import embedded_model_dir
from tests.attribution.test_integrated_gradients import with_random_biases
from tests.conftest import make_tiny_qa_model


def test_every_section_on_a_tiny_bert(shared_data, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    from bench import bench_ig

    model_dir = tmp_path / "tiny"
    with_random_biases(make_tiny_qa_model("bert", layers=2, hidden=32)).save_pretrained(model_dir)
    AutoTokenizer.from_pretrained(str(embedded_model_dir())).save_pretrained(model_dir)
    out = bench_ig.main(["--model", str(model_dir), "--device", "cpu", "--examples", "3", "--rounds", "1",
                         "--steps", "8", "--tokens", "60,140", "--max-grid", "256", "--max-steps", "400",
                         "--pad-to", "160", "--threads", "1", "--json", str(tmp_path / "ig.json")])
    details = out["details"]
    assert out["skipped"] is None and details["examples"] == 3 and details["layers"] == ["embeddings", "layer_01",
                                                                                           "layer_02"]
    # equal settings: ours equals Captum on every layer
    assert max(details["equal"]["max_rel_diff_per_layer"]) <= 1e-4
    # equal accuracy: both sides meet the criterion (median δ <= 1 %, p95 <= 5 % per layer)
    acc = details["accuracy"]
    assert acc["ours_meets"] and acc["captum_m"] in bench_ig.GRID
    assert max(acc["captum_median_delta_per_layer"]) <= 0.01 and max(acc["captum_p95_delta_per_layer"]) <= 0.05
    assert acc["captum_m"] == max(acc["smallest_grid_m_per_layer"]) or acc["captum_m"] > max(
        acc["smallest_grid_m_per_layer"])
    assert np.all(np.array(acc["ours_steps_per_layer_max"]) <= 400)
    # rows: equal, bound, accuracy, padded; finite ratios; the JSON on disk is the same result
    assert [r["target"] for r in out["rows"]] == [1.4, 0.9, 3.0, None]
    assert all(math.isfinite(r["ratio"]) and r["ratio"] > 0 for r in out["rows"])
    assert json.loads((tmp_path / "ig.json").read_text())["rows"] == json.loads(json.dumps(out["rows"]))


def test_the_criterion_is_per_layer_median_and_95th_percentile():
    from bench.bench_ig import meets

    small = [[0.001, 0.001, 0.001]] * 17
    # layer 0: all small; layer 1: three 20 % outliers in 20 examples put the 95th percentile at 20 %;
    # layer 2: one outlier stays under 5 % at the 95th percentile (interpolated: 0.001 + 0.05 * 0.199)
    deltas = np.array(small + [[0.001, 0.2, 0.001], [0.001, 0.2, 0.001], [0.001, 0.2, 0.2]])
    assert meets(deltas).tolist() == [True, False, True]
    assert meets(np.array([[0.02], [0.02], [0.0]])).tolist() == [False]  # median 2 %
