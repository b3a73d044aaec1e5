"""Layer-wise IG: equal to Captum's LayerIntegratedGradients on every layer, complete, and accurate on demand."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from bench.references import captum_layer_ig, qa_target
from lit_rcqa.attribution.integrated_gradients import IGSettings, best_span, best_spans, integrated_gradients
from lit_rcqa.attribution.layers import EncoderAdapter
from lit_rcqa.errors import UserError
from tests.conftest import make_tiny_qa_model


def with_random_biases(model, seed=3, scale=0.5):
    """Freshly initialised models have zero biases, which makes h = 0 a LayerNorm singularity (every
    α > 0 gives the same output): IG is then degenerate. Trained models have non-zero biases; so do these."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model


def tiny_example(T=16, question=6, seed=3):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 2000, (T,), generator=g)
    ids[0], ids[question], ids[-1] = 101, 102, 102  # [CLS] question [SEP] passage [SEP]
    types = torch.zeros(T, dtype=torch.long)
    types[question + 1:] = 1
    return ids, types


@pytest.fixture(scope="module")
def tiny():
    return with_random_biases(make_tiny_qa_model("bert", layers=2, hidden=32))


def relative_diff(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


@pytest.mark.parametrize("method, steps", [("gausslegendre", 20), ("riemann_trapezoid", 10),
                                           ("riemann_middle", 7), ("riemann_right", 5)])
@pytest.mark.parametrize("target", ["prob", "logit"])
def test_equals_captum_layer_integrated_gradients_on_every_layer_of_a_tiny_bert(tiny, method, steps, target):
    ids, types = tiny_example()
    settings = IGSettings(steps=steps, method=method, target=target, max_batch_tokens=3 * 16)  # chunks of 3 rows
    result = integrated_gradients(tiny, ids, token_type_ids=types, settings=settings)
    adapter = EncoderAdapter(tiny)
    assert result.layers == [0, 1, 2]
    for row, layer in enumerate(result.layers):
        reference = captum_layer_ig(tiny, adapter.layer_module(layer), ids, types,
                                    (result.pred_start, result.pred_end), steps=steps, method=method,
                                    target=target)  # [T, d]
        assert relative_diff(result.importance[row], reference.norm(dim=-1).numpy()) <= 1e-4
        assert relative_diff(result.signed[row], reference.sum(dim=-1).numpy()) <= 1e-4


@pytest.mark.slow
def test_equals_captum_on_every_layer_of_the_embedded_minilm(tokenizer):
    from transformers import AutoModelForQuestionAnswering

    from lit_rcqa.paths import embedded_model_dir

    torch.manual_seed(0)  # the QA head is newly initialised
    model = AutoModelForQuestionAnswering.from_pretrained(str(embedded_model_dir())).eval()
    enc = tokenizer("Who wrote the letter?", "The letter was written by Ada Lovelace in London in 1843.",
                    return_tensors="pt")
    ids, types = enc["input_ids"][0], enc["token_type_ids"][0]
    result = integrated_gradients(model, ids, token_type_ids=types, settings=IGSettings(steps=16))
    adapter = EncoderAdapter(model)
    assert result.layers == list(range(7)) and result.importance.shape == (7, len(ids))
    for row, layer in enumerate(result.layers):
        reference = captum_layer_ig(model, adapter.layer_module(layer), ids, types,
                                    (result.pred_start, result.pred_end), steps=16)
        assert relative_diff(result.importance[row], reference.norm(dim=-1).numpy()) <= 1e-4, layer


def test_completeness_gap_is_small_with_enough_gauss_legendre_steps(tiny):
    ids, types = tiny_example()
    result = integrated_gradients(tiny, ids, token_type_ids=types, settings=IGSettings(steps=64))
    assert (result.delta <= 1e-3).all()
    # completeness itself: Σ IG = F(h) − F(b), and the stored views are consistent with it
    expected = result.target_value - result.baseline_value
    np.testing.assert_allclose(result.attribution_sum, expected, rtol=1e-3)
    np.testing.assert_allclose(result.signed.sum(axis=1), result.attribution_sum, rtol=1e-4)
    # F(h) is what the model says about the explained span
    assert result.target_value == pytest.approx(result.start_prob + result.end_prob, rel=1e-6)


def test_completeness_with_a_nonzero_baseline_and_the_logit_target(tiny):
    ids, types = tiny_example()
    baseline = lambda layer, h: 0.3 * h.mean(dim=0, keepdim=True).expand_as(h)  # [T, d]
    result = integrated_gradients(tiny, ids, token_type_ids=types, baseline=baseline,
                                  settings=IGSettings(steps=48, target="logit"))
    assert (result.delta <= 1e-3).all()
    zero = integrated_gradients(tiny, ids, token_type_ids=types, settings=IGSettings(steps=48, target="logit"))
    assert not np.allclose(result.baseline_value, zero.baseline_value)


def test_a_coarse_rule_has_a_larger_gap_than_gauss_legendre(tiny):
    ids, types = tiny_example()
    coarse = integrated_gradients(tiny, ids, token_type_ids=types,
                                  settings=IGSettings(steps=4, method="riemann_left"))
    fine = integrated_gradients(tiny, ids, token_type_ids=types, settings=IGSettings(steps=4))
    assert (coarse.delta > 10 * fine.delta).all()


# panel rule -> (settings, tolerance): each tight enough that some layer is refined past its initial nodes (9), loose
# enough to stay above the float32 rows' rounding floor (at 1e-5 Lobatto-5's Σ|e_p| meets it and runs to the cap)
PANEL_RULES = {"simpson, 4 panels (default)": ({}, 1e-4),
               "lobatto-5, 2 panels": ({"panel_points": 5, "breakpoints": (0.0, 0.5, 1.0)}, 2e-5)}


@pytest.mark.parametrize("rule", list(PANEL_RULES))
@pytest.mark.parametrize("criterion", ["panels", "total"])
def test_adaptive_meets_the_tolerance_and_equals_captum_at_the_same_nodes_and_weights(tiny, criterion, rule):
    ids, types = tiny_example()
    panels, tolerance = PANEL_RULES[rule]
    settings = IGSettings(tolerance=tolerance, criterion=criterion, max_batch_tokens=3 * 16, **panels)
    result = integrated_gradients(tiny, ids, token_type_ids=types, settings=settings)
    assert (result.delta <= tolerance).all() and result.converged.all()
    assert (result.steps > 9).any()  # some layer needed more than the initial panels: refined rules checked
    # every node is used (nothing thrown away) and the rule integrates constants exactly
    adapter = EncoderAdapter(tiny)
    for row, layer in enumerate(result.layers):
        alphas, weights = result.rules[row]
        assert len(alphas) == result.steps[row] and (weights > 0).all()
        assert weights.sum() == pytest.approx(1.0, abs=1e-12)
        reference = captum_layer_ig(tiny, adapter.layer_module(layer), ids, types,
                                    (result.pred_start, result.pred_end), rule=(alphas, weights))  # [T, d]
        assert relative_diff(result.importance[row], reference.norm(dim=-1).numpy()) <= 1e-4
        assert relative_diff(result.signed[row], reference.sum(dim=-1).numpy()) <= 1e-4
        assert float(reference.double().sum()) == pytest.approx(result.attribution_sum[row], rel=1e-4)


@pytest.mark.parametrize("chunk_rows", [None, 2, 5])
def test_adaptive_layers_packed_together_equal_each_layer_alone_in_any_chunking(tiny, chunk_rows):
    ids, types = tiny_example()
    settings = IGSettings(tolerance=1e-5) if chunk_rows is None else \
        IGSettings(tolerance=1e-5, max_batch_tokens=chunk_rows * 16)
    together = integrated_gradients(tiny, ids, token_type_ids=types, settings=settings)
    for row, layer in enumerate(together.layers):
        alone = integrated_gradients(tiny, ids, token_type_ids=types, layers=[layer],
                                     settings=IGSettings(tolerance=1e-5, max_batch_tokens=2 * 16))  # 2-row chunks
        assert alone.steps[0] == together.steps[row]
        np.testing.assert_allclose(alone.rules[0][0], together.rules[row][0])
        np.testing.assert_allclose(alone.importance[0], together.importance[row], rtol=1e-4, atol=1e-7)
        assert alone.delta[0] == pytest.approx(together.delta[row], abs=1e-6)


def test_the_higher_layers_alpha_one_nodes_ride_on_the_lowest_layers_row(tiny, monkeypatch):
    """Every layer's path ends at its own h_ℓ: the lowest layer's α = 1 row, carried up, gives the others' α = 1
    nodes, so each higher layer runs one row fewer than its nodes and the lowest runs all of its own."""
    ids, types = tiny_example()
    run = {}  # layer -> rows that entered the stacked passes there
    forward = EncoderAdapter.forward_stacked

    def counting(self, groups, tap=None):
        for layer, x in groups:
            run[layer] = run.get(layer, 0) + len(x)
        return forward(self, groups, tap)

    monkeypatch.setattr(EncoderAdapter, "forward_stacked", counting)
    with warnings.catch_warnings(record=True) as caught:  # the carried row's F is read without a graph warning
        warnings.simplefilter("always")
        result = integrated_gradients(tiny, ids, token_type_ids=types, settings=IGSettings(tolerance=1e-5))
    assert not [w for w in caught if w.filename.endswith("integrated_gradients.py")], [str(w.message) for w in caught]
    assert result.layers == [0, 1, 2] and (result.delta <= 1e-5).all()
    assert [run[layer] for layer in result.layers] == [result.steps[0], result.steps[1] - 1, result.steps[2] - 1]
    # where the stack cannot tap its boundaries, every layer runs its own α = 1 row, to the same result
    run.clear()
    monkeypatch.setattr(EncoderAdapter, "taps", property(lambda self: False))
    own = integrated_gradients(tiny, ids, token_type_ids=types, settings=IGSettings(tolerance=1e-5))
    assert [run[layer] for layer in own.layers] == list(own.steps)
    np.testing.assert_array_equal(own.steps, result.steps)
    np.testing.assert_allclose(own.importance, result.importance, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(own.attribution_sum, result.attribution_sum, rtol=1e-5)


def test_tolerance_mode_meets_its_target_with_fewer_steps_on_the_top_layer():
    model = with_random_biases(make_tiny_qa_model("bert", layers=4, hidden=32))
    ids, types = tiny_example()
    for rule in ("romberg", "gausslegendre"):
        result = integrated_gradients(model, ids, token_type_ids=types,
                                      settings=IGSettings(tolerance=1e-3, refine_method=rule, min_steps=3))
        assert (result.delta <= 1e-3).all(), rule
        assert result.steps[-1] < result.steps[:-1].max(), rule
        assert result.steps[-1] == 3


def test_tolerance_mode_stops_at_the_cap_and_reports_it(tiny):
    ids, types = tiny_example()
    result = integrated_gradients(tiny, ids, token_type_ids=types,
                                  settings=IGSettings(tolerance=1e-12, min_steps=3, max_steps=9,
                                                      refine_method="gausslegendre"))
    assert (result.delta > 1e-12).all() and (result.steps <= 9).all()
    assert result.steps[-1] == 9  # the top layer: 3 + 6 points; below, a warm start at 6 leaves no room for 12
    assert (result.steps[:-1] == 6).all()


def test_tolerance_mode_warm_starts_lower_layers_and_saves_evaluations():
    model = with_random_biases(make_tiny_qa_model("bert", layers=4, hidden=32))
    ids, types = tiny_example()
    settings = IGSettings(tolerance=1e-4, min_steps=3, max_steps=400, refine_method="gausslegendre")
    together = integrated_gradients(model, ids, token_type_ids=types, settings=settings)
    alone = [integrated_gradients(model, ids, token_type_ids=types, layers=[layer], settings=settings)
             for layer in together.layers]  # each layer from a cold start at 3 points
    assert (together.delta <= 1e-4).all() and all(a.delta[0] <= 1e-4 for a in alone)
    assert together.steps.sum() < sum(int(a.steps[0]) for a in alone)
    assert together.steps[-1] == alone[-1].steps[0]  # the top layer runs first, from the cold start


def test_chunking_padding_and_layer_selection_do_not_change_the_result(tiny):
    ids, types = tiny_example()
    full = integrated_gradients(tiny, ids, token_type_ids=types, settings=IGSettings(steps=10))
    chunked = integrated_gradients(tiny, ids, token_type_ids=types, layers="2,0",
                                   settings=IGSettings(steps=10, max_batch_tokens=1))
    assert chunked.layers == [0, 2]
    np.testing.assert_allclose(chunked.importance, full.importance[[0, 2]], rtol=1e-4, atol=1e-7)
    padded_ids = torch.cat([ids, torch.zeros(4, dtype=torch.long)])
    padded_types = torch.cat([types, torch.zeros(4, dtype=torch.long)])
    mask = (torch.arange(20) < 16).long()
    padded = integrated_gradients(tiny, padded_ids, mask, padded_types, settings=IGSettings(steps=10))
    assert padded.importance.shape == (3, 16)
    np.testing.assert_allclose(padded.importance, full.importance, rtol=1e-4, atol=1e-7)


def test_explains_the_best_passage_span_or_a_given_one(tiny):
    ids, types = tiny_example()
    result = integrated_gradients(tiny, ids, token_type_ids=types, settings=IGSettings(steps=4))
    with torch.no_grad():
        out = tiny(input_ids=ids[None], token_type_ids=types[None])
    passage = types.bool() & (torch.arange(16) < 15)
    assert (result.pred_start, result.pred_end) == best_span(out.start_logits[0], out.end_logits[0], passage)
    assert 7 <= result.pred_start <= result.pred_end <= 14
    assert result.start_prob == pytest.approx(float(out.start_logits[0].softmax(-1)[result.pred_start]), rel=1e-5)
    gold = integrated_gradients(tiny, ids, token_type_ids=types, span=(9, 11), settings=IGSettings(steps=4))
    assert (gold.pred_start, gold.pred_end) == (9, 11)
    expected = qa_target(out.start_logits, out.end_logits, (9, 11))
    assert gold.target_value == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(UserError, match="span"):
        integrated_gradients(tiny, ids, token_type_ids=types, span=(3, 40))


def test_best_span_respects_passage_order_and_length_on_hand_built_logits():
    start = torch.tensor([9.0, 0, 5, 0, 0, 0, 0, 0])
    end = torch.tensor([9.0, 8, 0, 0, 6, 0, 0, 7])
    passage = torch.tensor([False, True, True, True, True, True, True, False])
    assert best_span(start, end, passage) == (2, 4)  # not (0, 0): [CLS] is outside the passage; not end 1 < 2
    assert best_span(start, end, passage, max_answer_length=2) == (1, 1)
    with pytest.raises(UserError, match="no passage tokens"):
        best_span(start, end, torch.zeros(8, dtype=torch.bool))


def test_best_spans_equals_a_brute_force_search_over_allowed_spans():
    g = torch.Generator().manual_seed(0)
    start, end = torch.randn(6, 20, generator=g), torch.randn(6, 20, generator=g)
    start[:, 1], end[:, 19] = 50.0, 50.0  # tempting, but outside the passage 3..17
    for max_len in (1, 4, 30):
        got = best_spans(start, end, (3, 17), max_answer_length=max_len).tolist()
        for b in range(6):
            allowed = [(i, j) for i in range(3, 17) for j in range(i, min(i + max_len, 17))]
            want = max(allowed, key=lambda ij: float(start[b, ij[0]] + end[b, ij[1]]))
            assert tuple(got[b]) == want
    with pytest.raises(UserError, match="no passage tokens"):
        best_spans(start, end, (5, 5))
    mask = torch.zeros(20, dtype=torch.bool)
    mask[3:17] = True
    assert best_spans(start, end, mask).tolist() == best_spans(start, end, (3, 17)).tolist()
    assert best_span(start[2], end[2], mask) == tuple(best_spans(start, end, mask)[2].tolist())


def test_seed_preset_and_bad_settings(tiny):
    ids, types = tiny_example()
    result = integrated_gradients(tiny, ids, token_type_ids=types, settings=IGSettings(method="seed"))
    assert (result.steps == 20).all()
    with pytest.raises(UserError, match="steps >= 2"):
        IGSettings(steps=1)
    with pytest.raises(UserError, match="unknown integration rule"):
        IGSettings(method="simpson")
    with pytest.raises(UserError, match="target"):
        IGSettings(target="loss")
    with pytest.raises(UserError, match="out of range"):
        integrated_gradients(tiny, ids, token_type_ids=types, layers=[3])


def test_runs_inside_inference_mode_as_in_lightnings_prediction_loop(tiny):
    ids, types = tiny_example()
    outside = integrated_gradients(tiny, ids, token_type_ids=types, settings=IGSettings(steps=6))
    with torch.inference_mode():
        inside = integrated_gradients(tiny, ids.clone(), token_type_ids=types.clone(), settings=IGSettings(steps=6))
    np.testing.assert_allclose(inside.importance, outside.importance, rtol=1e-5)
