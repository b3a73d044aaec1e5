"""Every encoder family end to end: `train.py` (3 steps) -> `analyze.py --layers all` (2 questions) -> report.

Tiny random models with tokenizers trained here, offline (`tests/families.py`), plus MPNet, which has no layer
stack of its own and goes through the generic path. analyze.py explains the very runs that
tests/test_families_train.py checks: all of them are made once, in one subprocess (`tests/families_run.py`).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from lit_rcqa.attribution import store
from tests.families_run import ALL_FAMILIES, ANALYZED, LIMIT, FamilyRuns, family_runs

LAYER_NAMES = ["embeddings", "layer_01", "layer_02"]  # tests/families.py: 2 layers


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> FamilyRuns:
    return family_runs(tmp_path_factory)


@pytest.mark.slow
@pytest.mark.timeout(LIMIT)
@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_train_then_analyze_all_layers_writes_the_report(family, runs):
    runs.assert_ok(family, "train")
    run = runs.run_dir(family)
    assert json.loads((run / "model" / "config.json").read_text())["model_type"] == family
    runs.assert_ok(family, "analyze")
    out = run / "analysis"
    records = store.load(out)
    assert len(records) == ANALYZED
    for record in records.values():
        assert record.layers == LAYER_NAMES
        assert record.importance.shape == (3, len(record.tokens)) and np.isfinite(record.importance).all()
        assert record.passage_start <= record.pred_start <= record.pred_end < record.passage_end
    report = (out / "report.html").read_text(encoding="utf-8")
    assert all(name in report for name in LAYER_NAMES)
    # every figure written is embedded in the report, among them a t-SNE of each layer's hidden states
    embedded = set(re.findall(r'<img src="data:image/png;base64,[^"]+" alt="([^"]+)"', report))
    assert embedded == {p.name for p in (out / "figures").iterdir()}
    tsne = {name for name in embedded if name.startswith("tsne_")}
    assert any(tsne == {f"tsne_{i}_{layer}.png" for layer in [*LAYER_NAMES, "grid"]} for i in records), tsne
    assert (out / "tables" / "completeness.csv").is_file()
