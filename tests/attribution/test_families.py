"""Every encoder family: the prefix cache is the model's own hidden states, and every layer's IG equals Captum's.

Tiny random models built from each family's config (2 layers, hidden 32). `mpnet` has no stack of its own: it
goes through the generic path (`lit_rcqa.attribution.generic`). The Captum reference is written here, on the
model's own modules (a forward hook replaces the output of the module that produces h_ℓ), not through our
adapter.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lit_rcqa.attribution.integrated_gradients import IGSettings, best_span, integrated_gradients
from lit_rcqa.attribution.layers import EncoderAdapter
from lit_rcqa.errors import UserError
from tests.attribution.test_integrated_gradients import relative_diff, with_random_biases

FAMILIES = ["bert", "roberta", "xlm-roberta", "electra", "distilbert", "albert", "deberta-v2", "modernbert", "mpnet"]
GENERIC_ONLY = "mpnet"
VOCAB, T = 120, 12


def family_config(family: str, **extra):
    from transformers import AutoConfig

    common = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=64, pad_token_id=0)
    if family == "distilbert":
        return AutoConfig.for_model(family, vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                                    max_position_embeddings=64, pad_token_id=0)
    specific = {
        "electra": dict(embedding_size=16),  # a projection from the embeddings to the hidden size
        "albert": dict(embedding_size=16),   # one shared layer applied twice
        # DeBERTa-v3's layout: relative positions only, log buckets, normed relative embeddings
        "deberta-v2": dict(type_vocab_size=0, relative_attention=True, position_biased_input=False,
                           pos_att_type=["p2c", "c2p"], max_relative_positions=-1, position_buckets=8,
                           norm_rel_ebd="layer_norm", share_att_key=True),
        # layer 0 global, layer 1 local with a window (2 tokens each side) much shorter than the input
        "modernbert": dict(global_attn_every_n_layers=2, local_attention=4, bos_token_id=2, eos_token_id=3,
                           cls_token_id=2, sep_token_id=3),
    }.get(family, {})
    return AutoConfig.for_model(family, **{**common, **specific, **extra})


def family_model(family: str, **extra):
    from transformers import AutoModelForQuestionAnswering

    torch.manual_seed(0)
    return with_random_biases(AutoModelForQuestionAnswering.from_config(family_config(family, **extra)).eval())


def padded_batch(seed: int = 1):
    """2 rows of T random ids, the second padded after 9 tokens; type 1 from token 5 on (the passage)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, VOCAB, (2, T), generator=g)
    mask = torch.ones(2, T, dtype=torch.long)
    mask[1, 9:] = 0
    ids[mask == 0] = 0
    types = torch.zeros_like(ids)
    types[:, 5:] = 1
    types[mask == 0] = 0
    return ids, mask, types


def uses_token_types(family: str) -> bool:
    return family in ("bert", "electra", "albert")


def encoder_layers(model, family: str) -> list[torch.nn.Module]:
    """The encoder layers in the order the model runs them (ALBERT: its one shared layer, twice)."""
    if family == "albert":
        return [model.albert.encoder.albert_layer_groups[0].albert_layers[0]] * 2
    if family == "modernbert":
        return list(model.model.layers)
    base = {"xlm-roberta": "roberta", "deberta-v2": "deberta"}.get(family, family)
    encoder = getattr(model, base)
    return list(encoder.transformer.layer if family == "distilbert" else encoder.encoder.layer)


def producers(model, family: str) -> list[tuple[torch.nn.Module, int]]:
    """(module, call number) whose output is h_ℓ, for ℓ = 0 … L, read off the model's own structure."""
    layers = encoder_layers(model, family)
    if family == "albert":  # the embedding mapping, then the one shared layer's 1st, 2nd call
        return [(model.albert.encoder.embedding_hidden_mapping_in, 1), (layers[0], 1), (layers[1], 2)]
    if family == "modernbert":  # the last hidden state is reported after the final norm
        return [(model.model.embeddings, 1), (layers[0], 1), (model.model.final_norm, 1)]
    base = {"xlm-roberta": "roberta", "deberta-v2": "deberta"}.get(family, family)
    first = getattr(model, base).embeddings_project if family == "electra" else getattr(model, base).embeddings
    return [(first, 1)] + [(layer, 1) for layer in layers]


def hidden_of(output):
    return output if torch.is_tensor(output) else output[0]


def captum_reference(model, module, call, inputs: dict, span, steps: int) -> torch.Tensor:
    """Captum's IntegratedGradients of p_start[s] + p_end[e] w.r.t. the output of `module`'s `call`-th call in
    the model's own forward (zero baseline), Gauss-Legendre with `steps` points: [T, d]."""
    from captum.attr import IntegratedGradients

    def run(replacement=None):
        seen, kept = [0], []

        def hook(mod, args, output):
            seen[0] += 1
            if seen[0] != call:
                return None
            kept.append(hidden_of(output))
            if replacement is None:
                return None
            return replacement if torch.is_tensor(output) else (replacement, *output[1:])

        handle = module.register_forward_hook(hook)
        try:
            rows = 1 if replacement is None else replacement.shape[0]
            out = model(**{k: v.expand(rows, -1) for k, v in inputs.items()})
        finally:
            handle.remove()
        return out, kept[0]

    def target(x):  # [k, T, d] -> [k]
        out, _ = run(x)
        return out.start_logits.softmax(-1)[:, span[0]] + out.end_logits.softmax(-1)[:, span[1]]

    with torch.no_grad():
        _, h = run()  # [1, T, d]
    attribution = IntegratedGradients(target).attribute(h, baselines=torch.zeros_like(h), n_steps=steps,
                                                        method="gausslegendre")
    return attribution[0].detach()  # [T, d]


@pytest.mark.parametrize("family", FAMILIES)
def test_prefix_cache_equals_the_models_own_hidden_states_and_logits_from_every_layer(family):
    model = family_model(family)
    adapter = EncoderAdapter(model)
    assert adapter.generic == (family == GENERIC_ONLY)
    ids, mask, types = padded_batch()
    types = types if uses_token_types(family) else None
    kwargs = {} if types is None else {"token_type_ids": types}
    real = mask.bool()
    with torch.no_grad():
        reference = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, **kwargs)
        states = adapter.hidden_states(ids, mask, types)
        assert len(states) == len(reference.hidden_states) == 3
        for ours, theirs in zip(states, reference.hidden_states):
            torch.testing.assert_close(ours[real], theirs[real], rtol=1e-5, atol=1e-5)
        for layer in range(3):
            start, end = adapter.forward_from(layer, states[layer], mask)
            torch.testing.assert_close(start[real], reference.start_logits[real], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(end[real], reference.end_logits[real], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_rows_of_several_layers_stacked_in_one_pass_give_the_models_own_logits(family):
    """`forward_stacked` (adaptive IG packs every layer's rows into one pass): each group's rows, taken as h_ℓ,
    give the logits of the model's own forward on the unpadded question."""
    model = family_model(family)
    adapter = EncoderAdapter(model)
    ids, mask, types = padded_batch()
    n = int(mask[0].sum())  # the first row's real tokens: one unpadded question
    ids, types = ids[:1, :n], (types[:1, :n] if uses_token_types(family) else None)
    kwargs = {} if types is None else {"token_type_ids": types}
    with torch.no_grad():
        reference = model(input_ids=ids, **kwargs)
        states = adapter.hidden_states(ids, None, types)
        groups = [(layer, states[layer].expand(copies, -1, -1)) for layer, copies in ((0, 2), (1, 1), (2, 3))]
        start, end = adapter.forward_stacked(groups)
    assert start.shape == end.shape == (6, n)
    torch.testing.assert_close(start, reference.start_logits.expand(6, -1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(end, reference.end_logits.expand(6, -1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_tapped_boundary_gives_the_gradient_at_that_layers_hidden_state(family):
    """`forward_stacked(..., tap)`: a row that entered at h_0, read at boundary ℓ, has the gradient of the outputs
    w.r.t. h_ℓ that `forward_from(ℓ, h_ℓ)` gives (what adaptive IG's α = 1 node of layer ℓ needs)."""
    model = family_model(family)
    adapter = EncoderAdapter(model)
    if not adapter.taps:
        with pytest.raises(ValueError, match="cannot tap"):
            adapter.forward_stacked([(0, torch.zeros(1, 4, model.config.hidden_size))], {})
        return
    ids, mask, types = padded_batch()
    n = int(mask[0].sum())
    ids, types = ids[:1, :n], (types[:1, :n] if uses_token_types(family) else None)
    with torch.no_grad():
        states = adapter.hidden_states(ids, None, types)
    x0 = states[0].clone().requires_grad_(True)
    x1 = states[1].expand(2, -1, -1).clone().requires_grad_(True)  # two rows joining at layer 1, before it: row 0
    tap = {}
    start, end = adapter.forward_stacked([(0, x0), (1, x1)], tap)
    assert sorted(tap) == list(range(adapter.num_layers + 1))
    assert [len(tap[k]) for k in tap] == [1] + [3] * adapter.num_layers
    f = start[:, 1] + end[:, 2]
    grads = torch.autograd.grad(f.sum(), [tap[k] for k in range(1, adapter.num_layers + 1)])
    for k, g in zip(range(1, adapter.num_layers + 1), grads):
        h = states[k].clone().requires_grad_(True)
        s, e = adapter.forward_from(k, h)
        (own,) = torch.autograd.grad(s[0, 1] + e[0, 2], h)
        torch.testing.assert_close(g[0], own[0], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_from_runs_no_layer_below_the_one_it_starts_from(family):
    model = family_model(family)
    adapter = EncoderAdapter(model)
    calls = []
    layers = {id(m): m for m in encoder_layers(model, family)}.values()  # ALBERT: one module, hooked once
    handles = [m.register_forward_pre_hook(lambda mod, args: calls.append(mod)) for m in layers]
    ids, _, types = padded_batch()
    try:
        with torch.no_grad():
            states = adapter.hidden_states(ids[:1], None, types[:1] if uses_token_types(family) else None)
            assert len(calls) == 2
            for layer in range(3):
                calls.clear()
                adapter.forward_from(layer, states[layer].expand(4, -1, -1))
                assert len(calls) == 2 - layer, layer  # layers layer+1 … 2 only
    finally:
        for handle in handles:
            handle.remove()


@pytest.mark.parametrize("family", FAMILIES)
def test_every_layers_ig_equals_captum_on_the_models_own_modules(family):
    model = family_model(family)
    ids, mask, types = padded_batch()
    row = 1  # the padded row: our IG drops the padding; the reference runs on the real tokens only
    real = mask[row].bool()
    ids_r, types_r = ids[row][real], types[row][real]  # [9]
    passage = (5, 8)  # half-open token indices; the last real token is the closing separator
    settings = IGSettings(steps=8, method="gausslegendre", max_batch_tokens=3 * 9)  # several chunks per layer
    result = integrated_gradients(model, ids[row], mask[row], types[row] if uses_token_types(family) else None,
                                  passage=passage, settings=settings)
    inputs = {"input_ids": ids_r[None]} | ({"token_type_ids": types_r[None]} if uses_token_types(family) else {})
    with torch.no_grad():
        out = model(**inputs)
    in_passage = torch.zeros(len(ids_r), dtype=torch.bool)
    in_passage[passage[0]:passage[1]] = True
    span = best_span(out.start_logits[0], out.end_logits[0], in_passage)
    assert (result.pred_start, result.pred_end) == span
    assert result.layers == [0, 1, 2]
    for layer, (module, call) in enumerate(producers(model, family)):
        reference = captum_reference(model, module, call, inputs, span, steps=8)  # [T, d]
        assert relative_diff(result.importance[layer], reference.norm(dim=-1).numpy()) <= 1e-4, layer
        assert relative_diff(result.signed[layer], reference.sum(dim=-1).numpy()) <= 1e-4, layer


@pytest.mark.parametrize("family", ["bert", "modernbert", "deberta-v2"])
def test_the_generic_path_gives_the_family_paths_ig(family):
    model = family_model(family)
    ids, _, types = padded_batch()
    types = types[0] if uses_token_types(family) else None
    settings = IGSettings(steps=6)
    family_path = integrated_gradients(EncoderAdapter(model), ids[0], token_type_ids=types, passage=(5, 11),
                                       settings=settings)
    generic = integrated_gradients(EncoderAdapter(model, generic=True), ids[0], token_type_ids=types,
                                   passage=(5, 11), settings=settings)
    rows = slice(0, 2) if family == "modernbert" else slice(None)  # ModernBERT's h_L: before / after the final norm
    np.testing.assert_allclose(generic.importance[rows], family_path.importance[rows], rtol=1e-4, atol=1e-7)
    assert (generic.pred_start, generic.pred_end) == (family_path.pred_start, family_path.pred_end)


def test_deberta_v2_convolution_after_the_first_layer_is_part_of_h1():
    # DeBERTa-v2 (xlarge) convolves the first layer's output with the encoder's input: its own stack handles it,
    # the generic path cannot (the conv reads the model's own embeddings) and says so
    model = family_model("deberta-v2", conv_kernel_size=3)
    ids, mask, types = padded_batch()
    adapter = EncoderAdapter(model)
    real = mask.bool()
    with torch.no_grad():
        reference = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        states = adapter.hidden_states(ids, mask, None)
        for ours, theirs in zip(states, reference.hidden_states):
            torch.testing.assert_close(ours[real], theirs[real], rtol=1e-5, atol=1e-5)
        for layer in range(3):
            start, _ = adapter.forward_from(layer, states[layer], mask)
            torch.testing.assert_close(start[real], reference.start_logits[real], rtol=1e-5, atol=1e-5)
    assert adapter.layer_module(1) is model.deberta.encoder.conv
    with pytest.raises(UserError, match=r"model type 'deberta-v2': the generic layer-wise path does not reproduce "
                                        r"the model's own logits from layer 0 .*deberta\.encoder\.layer"):
        EncoderAdapter(model, generic=True)


def test_models_the_generic_path_cannot_handle_get_one_error_naming_what_is_missing():
    # ALBERT keeps one shared layer, not a ModuleList of its L layers
    with pytest.raises(UserError, match=r"model type 'albert': no nn\.ModuleList of its 2 layers "
                                        r"\(config\.num_hidden_layers\) found in AlbertForQuestionAnswering"):
        EncoderAdapter(family_model("albert"), generic=True)
    # an encoder without a span head
    from transformers import AutoModel

    with pytest.raises(UserError, match=r"model type 'mpnet': MPNetModel returns no start_logits / end_logits"):
        EncoderAdapter(AutoModel.from_config(family_config("mpnet")))
    with pytest.raises(UserError, match="does not support model type 'Linear': not a transformers"):
        EncoderAdapter(torch.nn.Linear(2, 2))


def test_the_generic_path_puts_the_models_layers_back_even_after_an_error():
    model = family_model(GENERIC_ONLY)
    adapter = EncoderAdapter(model)
    layers = list(model.mpnet.encoder.layer)
    states = adapter.hidden_states(padded_batch()[0][:1])
    with pytest.raises(RuntimeError):
        adapter.forward_from(2, states[2][..., :5])  # wrong width: the head fails inside the model's forward
    assert all(a is b for a, b in zip(model.mpnet.encoder.layer, layers))
    assert adapter.layer_module(2) is layers[1]
    with pytest.raises(ValueError, match="no module is known to output h_0"):
        adapter.layer_module(0)
    start, _ = adapter.forward_from(2, states[2])  # and it still works
    with torch.no_grad():
        torch.testing.assert_close(start, model(input_ids=padded_batch()[0][:1]).start_logits)
