"""analyze.py hands freed heap memory back between batches (IG: `process.HeapTrim`) and between records
(analyses), and reads every weight up front: the two reasons its peak RSS crept up with the number of examples."""

from __future__ import annotations

import torch

from analyze import main
from lit_rcqa import process
from lit_rcqa.process import read_all_weights, trimmed
from tests.conftest import make_tiny_qa_model
from tests.test_analyze import FAST
from tests.tiny_run import make_tiny_run


def test_the_heap_is_trimmed_after_every_batch_and_every_record(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(process, "release_freed_memory", lambda *_: calls.append(1))
    run = make_tiny_run(tmp_path / "runs" / "tiny", dev_size=5)
    args = ["--run", str(run), "--num-examples", "5", "--steps", "4", "--batch-size", "2", *FAST]
    assert main(args) == 0
    assert len(calls) == 3  # IG: once per batch (2 + 2 + 1 examples)
    calls.clear()
    assert main([*args, "--skip-ig", "--analyses", "roles,jsd"]) == 0
    assert len(calls) == 5  # analyses: once per record


def test_trimmed_yields_the_same_items_and_trims_after_each(monkeypatch):
    calls = []
    monkeypatch.setattr(process, "release_freed_memory", lambda *_: calls.append(len(calls)))
    seen = []
    for item in trimmed(iter("abc")):
        seen.append((item, len(calls)))
    assert seen == [("a", 0), ("b", 1), ("c", 2)] and len(calls) == 3


def test_reading_the_weights_changes_nothing():
    model = make_tiny_qa_model("bert")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    read_all_weights(model)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
