"""Decision flips on tiny BERTs where the answer is known, against HF's own forward, and the rate bookkeeping."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lit_rcqa.analysis.flips import FlipAccumulator, FlipResult, random_token, record_flips
from lit_rcqa.attribution.integrated_gradients import best_spans
from lit_rcqa.attribution.layers import EncoderAdapter
from tests.analysis.records import make_record
from tests.conftest import make_tiny_qa_model

CONTEXT = "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9"  # 10 passage tokens at indices 5..14 of 16


def with_inputs(record, seed=0):
    """The record with random word ids, [CLS]/[SEP] ids and segment ids, as the IG writer stores them."""
    T = len(record.tokens)
    ids = np.random.default_rng(seed).integers(1000, 2000, T)
    ids[0], ids[record.passage_start - 1], ids[-1] = 101, 102, 102
    types = np.zeros(T, dtype=np.int64)
    types[record.passage_start:] = 1
    return dataclasses.replace(record, input_ids=ids, token_type_ids=types)


def record_with_top(n_layers, top_token, seed=0):
    imp = np.random.default_rng(seed).random((n_layers, 10)) * 0.1
    imp[:, top_token - 5] = 1.0  # passage token index -> passage column
    return with_inputs(make_record("q1 q2 q3", CONTEXT, imp, example_id=f"ex{seed}"), seed)


def readout_bert(layers=2):
    """A tiny BERT in which tokens never mix and the QA head reads one hidden unit.

    Attention and feed-forward outputs are zeroed, so each layer is LayerNorm∘LayerNorm per position (a zeroed
    state stays zero up to the head); every word embedding is dominated by unit 0, so after LayerNorm each real
    token's unit 0 is ≈ √(H−1) with tiny differences, and start = end logits = 10·unit 0. The answer is the
    single token with the largest unit 0; zeroing it moves the answer, zeroing any other token cannot.
    """
    model = make_tiny_qa_model("bert", layers=layers, hidden=32)
    with torch.no_grad():
        for layer in model.bert.encoder.layer:
            for linear in (layer.attention.output.dense, layer.output.dense):
                linear.weight.zero_()
                linear.bias.zero_()
        model.bert.embeddings.word_embeddings.weight[:, 0] += 100.0
        model.qa_outputs.weight.zero_()
        model.qa_outputs.weight[:, 0] = 10.0
        model.qa_outputs.bias.zero_()
    return model


def test_zeroing_the_token_the_head_reads_always_flips_and_no_other_token_does():
    model = readout_bert(layers=2)
    record = record_with_top(3, top_token=5)
    adapter = EncoderAdapter(model)
    with torch.no_grad():
        start, end = model(input_ids=torch.as_tensor(record.input_ids)[None],
                           token_type_ids=torch.as_tensor(record.token_type_ids)[None])[:2]
    answer = int(start[0, 5:15].argmax()) + 5
    assert best_spans(start, end, (5, 15))[0].tolist() == [answer, answer]
    others = [t for t in range(5, 15) if t != answer]

    hit = record_flips(dataclasses.replace(record_with_top(3, answer)), adapter)
    assert hit.original_span == (answer, answer)
    assert hit.top1_token.tolist() == [answer] * 3 and hit.top1_flipped.all()
    assert not hit.random_flipped.any() and set(hit.random_token) <= set(others)

    miss = record_flips(record_with_top(3, others[0]), model)
    assert miss.top1_token.tolist() == [others[0]] * 3 and not miss.top1_flipped.any()


def test_flips_match_hf_forward_with_the_layer_output_zeroed_by_a_hook():
    model = make_tiny_qa_model("bert", layers=3, hidden=32, seed=3)
    with torch.no_grad():
        model.qa_outputs.weight.mul_(50.0)  # sharper logits, so zeroing one token can move the span
    adapter = EncoderAdapter(model)
    patterns = set()
    for top in range(5, 15):  # every passage token as the top-1 once
        record = record_with_top(4, top_token=top)
        result = record_flips(record, adapter, seed=7)
        ids = torch.as_tensor(record.input_ids)[None]
        types = torch.as_tensor(record.token_type_ids)[None]
        for row in range(4):
            for token, flipped in ((result.top1_token[row], result.top1_flipped[row]),
                                   (result.random_token[row], result.random_flipped[row])):
                def zero(module, args, output, token=int(token)):
                    hidden = output[0] if isinstance(output, tuple) else output
                    hidden = hidden.clone()
                    hidden[:, token] = 0.0
                    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

                handle = adapter.layer_module(row).register_forward_hook(zero)
                try:
                    with torch.no_grad():
                        out = model(input_ids=ids, token_type_ids=types)
                finally:
                    handle.remove()
                span = tuple(best_spans(out.start_logits, out.end_logits, (5, 15))[0].tolist())
                assert (span != result.original_span) == bool(flipped), (top, row, token)
        patterns.add(tuple(result.top1_flipped))
    # not vacuous: some tokens flip at some layers only, so a layer taken one too high or low would show
    assert any(0 < sum(p) < 4 for p in patterns) and len(patterns) >= 3


def test_random_token_is_seeded_in_the_passage_and_never_the_top_token():
    draws = {random_token("ex", 2, 5, 15, exclude=7, seed=s) for s in range(200)}
    assert draws == set(range(5, 15)) - {7}
    assert random_token("ex", 2, 5, 15, 7) == random_token("ex", 2, 5, 15, 7)
    assert random_token("ex", 2, 5, 6, exclude=5) == -1


def test_record_without_input_ids_is_refused():
    record = make_record("q", CONTEXT, np.ones((3, 10)))
    with pytest.raises(ValueError, match="no input_ids"):
        record_flips(record, make_tiny_qa_model("bert", layers=2))


def _result(top1, rand, rand_token=(6, 6), span=(5, 5)):
    return FlipResult(["embeddings", "layer_01"], np.array([5, 5]), np.array(rand_token),
                      np.array(top1, dtype=bool), np.array(rand, dtype=bool), span)


def test_accumulator_rates_and_ratio():
    acc = FlipAccumulator(["embeddings", "layer_01"])
    acc.add_result(_result([1, 1], [1, 0]), stored_span=(5, 5))
    acc.add_result(_result([1, 0], [0, 0]), stored_span=(5, 6))
    acc.add_result(_result([0, 0], [1, 0], rand_token=(6, -1)))   # no control token at layer_01
    acc.add_result(_result([1, 0], [0, 0]))
    np.testing.assert_allclose(acc.top1_rate(), [0.75, 0.25])
    np.testing.assert_allclose(acc.random_rate(), [0.5, 0.0])
    assert acc.n_random.tolist() == [4, 3] and acc.n_examples == 4 and acc.n_mismatched == 1
    ratio = acc.ratio()
    assert ratio[0] == pytest.approx(1.5) and ratio[1] == np.inf

    empty = FlipAccumulator(["embeddings"])
    assert np.isnan(empty.top1_rate()).all() and np.isnan(empty.ratio()).all()
    with pytest.raises(ValueError, match="expected"):
        empty.add_result(_result([0, 0], [0, 0]))


def span_bert(start_word: int, end_word: int):
    """`readout_bert` whose QA head reads unit 1 for starts and unit 2 for ends, which only `start_word` and
    `end_word` (token ids) carry: the best span runs from the one to the other, however far apart."""
    model = readout_bert(layers=2)
    with torch.no_grad():
        words = model.bert.embeddings.word_embeddings.weight
        words[start_word, 1] += 60.0
        words[end_word, 2] += 60.0
        model.qa_outputs.weight.zero_()
        model.qa_outputs.weight[0, 1] = 10.0
        model.qa_outputs.weight[1, 2] = 10.0
    return model


def test_flips_find_the_models_span_under_the_runs_max_answer_length():
    """A run trained with a short max_answer_length: the unperturbed span (and so every flip) is searched under
    that limit, as the run's own answers were; under the default 30 the span would be 8 tokens long."""
    record = record_with_top(3, top_token=7)
    start_word, end_word = int(record.input_ids[5]), int(record.input_ids[12])
    model = span_bert(start_word, end_word)
    assert record_flips(record, model).original_span == (5, 12)  # the long span wins when it is allowed

    short = FlipAccumulator(["embeddings", "layer_01", "layer_02"], max_answer_length=4).add(record, model)
    s, e = short.original_span
    assert 0 <= e - s < 4 and 5 <= s and e < 15
    assert short.original_span == record_flips(record, model, max_answer_length=4).original_span


def test_the_flips_analysis_searches_spans_under_the_runs_max_answer_length():
    """run_analyses(postprocess=the run's) reaches the flips analysis: its spans stay within the run's limit."""
    from lit_rcqa.analysis import registry
    from lit_rcqa.analysis.registry import Context, Item
    from lit_rcqa.evaluation.postprocess import PostprocessSettings

    import lit_rcqa.analysis  # noqa: F401  (registers the built-in analyses)

    record = record_with_top(3, top_token=7)
    model = span_bert(int(record.input_ids[5]), int(record.input_ids[12]))
    spans = {}
    for limit in (4, 30):
        context = Context(tuple(record.layers), model=model, postprocess=PostprocessSettings(max_answer_length=limit))
        item = Item(record, list(record.layers), 0.5, False)
        next(a for a in registry.selected(["flips"]) if a.name == "flips").start(context).add(item)
        spans[limit] = item.flips.original_span
    assert spans[30] == (5, 12) and 0 <= spans[4][1] - spans[4][0] < 4
