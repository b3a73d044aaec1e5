"""Samplers of the data module: length grouping, even DDP split, exact resume, whole examples per rank."""

from __future__ import annotations

import numpy as np
import pytest

from lit_rcqa.data.datamodule import ExampleShardSampler, LengthGroupedBatchSampler, QADataModule
from lit_rcqa.errors import UserError


def lengths(n: int = 203, seed: int = 0) -> list[int]:
    return np.random.default_rng(seed).integers(20, 384, size=n).tolist()


def test_every_feature_once_per_epoch_and_epochs_differ():
    sampler = LengthGroupedBatchSampler(lengths(), 8, seed=3)
    first = [i for batch in sampler for i in batch]
    assert sorted(first) == list(range(203))
    sampler.set_epoch(1)
    assert [i for batch in sampler for i in batch] != first


def test_length_grouping_cuts_padding():
    ls = lengths(2000)
    def padding(group: bool) -> int:
        sampler = LengthGroupedBatchSampler(ls, 16, group_by_length=group)
        return sum(len(b) * max(ls[i] for i in b) - sum(ls[i] for i in b) for b in sampler)
    assert padding(True) < 0.2 * padding(False)


def test_ranks_get_disjoint_equal_shares():
    ls = lengths(205)
    shares = [list(LengthGroupedBatchSampler(ls, 8, rank=r, world_size=3)) for r in range(3)]
    assert len({len(s) for s in shares}) == 1  # same number of steps on every rank, or DDP hangs
    seen = [i for s in shares for b in s for i in b]
    assert len(seen) == len(set(seen))


@pytest.mark.parametrize("done", [0, 1, 7, 25])
def test_resume_continues_with_exactly_the_remaining_batches(done):
    full = list(LengthGroupedBatchSampler(lengths(), 8, seed=5))
    resumed = LengthGroupedBatchSampler(lengths(), 8, seed=5)
    resumed.resume_at(epoch=0, batches_done=done)
    assert full[:done] + list(resumed) == full
    assert len(resumed) == len(full)  # the trainer counts the epoch's batches from the restored position
    assert list(resumed) == full  # the skip applies to the interrupted epoch only


def test_resume_at_the_end_of_an_epoch_starts_the_next_one():
    nxt = LengthGroupedBatchSampler(lengths(), 8, seed=5)
    nxt.set_epoch(1)
    resumed = LengthGroupedBatchSampler(lengths(), 8, seed=5)
    resumed.resume_at(epoch=0, batches_done=len(resumed))
    assert list(resumed) == list(nxt)


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_eval_shards_hold_whole_examples_once(world_size):
    example_index = [0, 0, 1, 2, 2, 2, 3, 4, 5, 5]
    shards = [list(ExampleShardSampler(example_index, rank=r, world_size=world_size)) for r in range(world_size)]
    assert sorted(f for shard in shards for f in shard) == list(range(10))  # every feature, once
    for rank, shard in enumerate(shards):
        examples = {example_index[f] for f in shard}
        # whole examples: every feature of an example this rank scores is on this rank
        assert shard == [f for f in range(10) if example_index[f] in examples]
        for other in shards[:rank] + shards[rank + 1:]:
            assert examples.isdisjoint(example_index[f] for f in other)
    # ranks share the examples as evenly as whole examples allow (6 examples)
    assert sorted(len({example_index[f] for f in shard}) for shard in shards) == {
        1: [6], 2: [3, 3], 3: [2, 2, 2]}[world_size]


@pytest.mark.parametrize("kwargs, fragment", [
    ({"train_file": "a.json"}, "go together"),
    ({"train_file": "/nope/a.json", "dev_file": "/nope/b.json"}, "/nope/a.json"),
    ({"doc_stride": 384}, "doc_stride"),
])
def test_bad_data_settings_name_the_setting(kwargs, fragment):
    with pytest.raises(UserError, match=fragment):
        QADataModule(**kwargs)


def test_the_recorded_data_source_names_the_files_read_not_the_variables(tmp_path, monkeypatch):
    """metrics.json's `data` says which files a run read: `${SQUAD_DIR}` and `~` expanded as when loading."""
    for name in ("train.json", "dev.json"):
        (tmp_path / name).write_text("{}")
    monkeypatch.setenv("SQUAD_DIR", str(tmp_path))
    module = QADataModule(train_file="${SQUAD_DIR}/train.json", dev_file="$SQUAD_DIR/dev.json")
    assert module.source == f"{tmp_path}/train.json | {tmp_path}/dev.json"
    assert QADataModule().source == "synthetic"
