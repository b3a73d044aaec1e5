"""The analyses' streaming pass keeps no record and no per-token array: its state grows by a few bytes per example.

What it may keep per example are the numbers exact medians need (δ per layer; quantifier flag, EM and
confidence), in compact rows; plus, once, the few examples shown as t-SNE plots and highlighted passages.
"""

from __future__ import annotations

import dataclasses
import gc
import sys
import types
import weakref

import numpy as np

from lit_rcqa.analysis import registry
from lit_rcqa.analysis.pipeline import AnalysisPass
from lit_rcqa.analysis.registry import Context
from tests.analysis.records import make_record
from tests.conftest import make_tiny_qa_model

LAYERS = ["embeddings", "layer_01", "layer_02"]
N_WORDS = 400  # long passages: keeping any [layers, tokens] array would cost kilobytes per example


def long_record(i: int, rng: np.random.Generator):
    words = [str(rng.integers(1, 500)) if rng.random() < 0.1 else f"w{rng.integers(0, 60)}" for _ in range(N_WORDS)]
    question = "How many w3 are there ?" if i % 3 == 0 else "Which w7 comes first ?"
    start = int(rng.integers(0, N_WORDS - 3))
    rec = make_record(question, " ".join(words), rng.random((len(LAYERS), N_WORDS)), pred_words=(start, start + 2),
                      evidence_span=(0, 20), example_id=f"long{i}")
    T = len(rec.tokens)
    return dataclasses.replace(rec, gold_texts=(rec.pred_text,), input_ids=rng.integers(1000, 2000, T),
                               token_type_ids=(np.arange(T) >= rec.passage_start).astype(np.int64),
                               delta=rng.random(len(LAYERS)), steps=rng.integers(2, 60, len(LAYERS)))


def retained_bytes(root) -> int:
    """Bytes reachable from `root`: every object once, array data included (a view counts its base)."""
    seen, stack, total = set(), [root], 0
    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, np.ndarray) and obj.base is not None:
            stack.append(obj.base)
        stack.extend(gc.get_referents(obj))
    return total


def pass_state(state: AnalysisPass) -> dict:
    # The model is no per-example state; the per-example table (one short row per example, by design) is
    # measured on its own below.
    return {name: {k: v for k, v in vars(acc).items() if k != "adapter"}
            for name, acc in state.running.items() if name != "examples"}


def test_the_pass_state_grows_by_a_few_bytes_per_example_and_holds_no_record():
    rng = np.random.default_rng(0)
    context = Context(tuple(LAYERS), top_k=5, jsd_k=(2, 5), window=5, model=make_tiny_qa_model("bert", layers=2))
    state = AnalysisPass(context, registry.names())

    def feed(n: int) -> list[weakref.ref]:
        refs = []
        for _ in range(n):
            record = long_record(state.n, rng)
            state.add(record, LAYERS, confidence=0.5, nbest=True)
            refs.append(weakref.ref(record.importance))
        return refs

    feed(10)  # past the few examples kept whole (highlighted passages) and every lazy first allocation
    before = retained_bytes(pass_state(state))
    refs = feed(150)
    gc.collect()
    per_example = (retained_bytes(pass_state(state)) - before) / 150
    # δ: 3 float64; outcomes: 3 float64; up to 2x spare capacity -> at most 96 bytes
    assert per_example <= 100, f"{per_example:.0f} bytes kept per example"
    assert all(ref() is None for ref in refs), "a record's importance array is still referenced"
    running = state.running
    assert state.n == 160 and running["flips"].acc.n_examples == 160 and len(running["html"].pages) == 5
    # The examples table: one row per example of scalars and short strings (the top-5 words per layer), no
    # array and nothing that grows with the passage (400 words here).
    rows = running["examples"].rows
    assert len(rows) == 160
    row_bytes = retained_bytes(rows[10:]) / 150
    assert row_bytes <= 3000, f"{row_bytes:.0f} bytes per examples-table row"
    assert not any(isinstance(v, np.ndarray) and v.size > 1 for row in rows for v in row)
