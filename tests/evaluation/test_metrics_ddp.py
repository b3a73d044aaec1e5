"""Two CPU processes (gloo), the data split between them: the synced metric equals one process's exactly."""

from __future__ import annotations

import os
import random
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lit_rcqa.evaluation.metrics import SquadExactMatch, SquadF1, SquadMetrics


def _data(n: int = 997, seed: int = 0):
    """Predictions with many distinct F1 fractions (so float sums would depend on order), some no-answer,
    and golds that normalise to nothing (".", "the"), which the v2 rule drops."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(12)]
    preds, golds = [], []
    for i in range(n):
        gold = [" ".join(rng.choices(words, k=rng.randint(1, 9))) for _ in range(rng.randint(0, 3))]
        if gold and rng.random() < 0.2:
            gold.insert(rng.randrange(len(gold) + 1), rng.choice([".", "the", "?!"]))
        preds.append(" ".join(rng.choices(words, k=rng.randint(0, 11))))
        golds.append(gold)
    return preds, golds


def _metrics():
    return [SquadMetrics(), SquadExactMatch(), SquadF1(),
            SquadMetrics(version_2=True), SquadExactMatch(version_2=True), SquadF1(version_2=True)]


def _compute(metrics, preds, golds):
    for m in metrics:
        m.update(preds, golds)
    out = {}
    for m in metrics:
        value = m.compute()
        name = f"{type(m).__name__}{'_v2' if m.version_2 else ''}"
        if isinstance(value, dict):
            out.update({f"{name}/{k}": v.item() for k, v in value.items()})
        else:
            out[name] = value.item()
    return out


def _worker(rank: int, world: int, port: int, queue) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        preds, golds = _data()
        cut = 401  # uneven split
        mine = slice(0, cut) if rank == 0 else slice(cut, None)
        # two updates per rank, so states accumulate before the sync
        metrics = _metrics()
        half = (mine.start + (mine.stop or len(preds))) // 2
        for m in metrics:
            m.update(preds[mine.start:half], golds[mine.start:half])
        out = _compute(metrics, preds[half:mine.stop], golds[half:mine.stop])
        queue.put((rank, out))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.ddp
def test_two_rank_metrics_equal_single_process_exactly():
    preds, golds = _data()
    single = _compute(_metrics(), preds, golds)
    assert single["SquadMetrics/NoAns_total"] > 0 and 0 < single["SquadMetrics/f1"] < 100
    # the two rules differ on this data (empty predictions against "." golds), so both are checked
    assert single["SquadMetrics/exact_match"] != single["SquadMetrics_v2/exact_match"]

    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.spawn(_worker, args=(2, _free_port(), queue), nprocs=2, join=True)
    results = dict(queue.get() for _ in range(2))
    for rank in (0, 1):
        assert results[rank] == single  # exact, every key, on both ranks


def test_float_sum_would_not_be_exact():
    """Why the F1 state is fixed point: summing the same float F1 values split in two differs."""
    from lit_rcqa.evaluation.metrics import f1_score, max_over_golds

    preds, golds = _data()
    scores = [max_over_golds(f1_score, p, g) for p, g in zip(preds, golds)]
    sequential = sum(scores)
    split = sum(scores[:401]) + sum(scores[401:])
    halves = [sum(scores[i:i + 100]) for i in range(0, len(scores), 100)]
    assert sequential != split or sequential != sum(halves)  # order matters for floats
    m1, m2 = SquadF1(), SquadF1()
    m1.update(preds, golds)
    m2.update(preds[:401], golds[:401])
    m2.update(preds[401:], golds[401:])
    assert m1.compute().item() == m2.compute().item()
    assert m1.compute().item() == pytest.approx(100 * sequential / len(scores), abs=1e-10)
    assert torch.equal(m1.f1_fixed, m2.f1_fixed)
