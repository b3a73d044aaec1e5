"""Encoder adapters: the prefix cache and the partial forward reproduce the full model, per family."""

from __future__ import annotations

import pytest
import torch

from lit_rcqa.attribution.layers import EncoderAdapter, parse_layers
from lit_rcqa.errors import UserError
from tests.conftest import make_tiny_qa_model

FAMILIES = ["bert", "roberta", "distilbert", "electra"]


def padded_batch(model, seed=1):
    """3 rows of 12 tokens, the last two padded; question = type 0, passage = type 1."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 1000, (3, 12), generator=g)
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, 8:] = 0
    mask[2, 5:] = 0
    ids[mask == 0] = model.config.pad_token_id or 0
    types = torch.zeros_like(ids)
    types[:, 6:] = 1
    types[mask == 0] = 0
    return ids, mask, types


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_from_every_layer_reproduces_the_full_model_with_padding(family):
    model = make_tiny_qa_model(family, layers=3)
    adapter = EncoderAdapter(model)
    ids, mask, types = padded_batch(model)
    types = None if family == "distilbert" else types
    kwargs = {} if types is None else {"token_type_ids": types}
    with torch.no_grad():
        reference = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, **kwargs)
        states = adapter.hidden_states(ids, mask, types)
        assert len(states) == adapter.num_layers + 1 == 4
        for ours, theirs in zip(states, reference.hidden_states):
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
        real = mask.bool()
        for layer in range(adapter.num_layers + 1):
            start, end = adapter.forward_from(layer, states[layer], mask)
            torch.testing.assert_close(start[real], reference.start_logits[real], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(end[real], reference.end_logits[real], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_padding_does_not_leak_into_real_tokens(family):
    # row 2 alone and unpadded (mask None) must give the logits it gets inside the padded batch
    model = make_tiny_qa_model(family, layers=2)
    adapter = EncoderAdapter(model)
    ids, mask, types = padded_batch(model)
    types = None if family == "distilbert" else types
    with torch.no_grad():
        batch_states = adapter.hidden_states(ids, mask, types)
        alone = adapter.hidden_states(ids[2:, :5], None, None if types is None else types[2:, :5])
        start_b, _ = adapter.forward_from(1, batch_states[1], mask)
        start_a, _ = adapter.forward_from(1, alone[1])
    torch.testing.assert_close(start_a[0], start_b[2, :5], rtol=1e-5, atol=1e-5)


def test_layer_modules_are_the_embeddings_and_the_encoder_layers(tiny_bert):
    adapter = EncoderAdapter(tiny_bert)
    assert adapter.layer_module(0) is tiny_bert.bert.embeddings
    assert adapter.layer_module(2) is tiny_bert.bert.encoder.layer[1]
    assert adapter.layer_names([0, 2]) == ["embeddings", "layer_02"]
    with pytest.raises(UserError, match="out of range"):
        adapter.forward_from(3, torch.zeros(1, 4, 32))


def test_adapter_puts_the_model_in_eval_mode(tiny_bert):
    tiny_bert.train()
    EncoderAdapter(tiny_bert)
    assert not tiny_bert.training and not any(m.training for m in tiny_bert.modules())


def test_a_model_without_a_family_stack_goes_through_the_generic_path():
    from transformers import AutoConfig, AutoModelForQuestionAnswering

    config = AutoConfig.for_model("mpnet", vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64)
    adapter = EncoderAdapter(AutoModelForQuestionAnswering.from_config(config))
    assert adapter.generic and adapter.num_layers == 2
    assert not EncoderAdapter(make_tiny_qa_model("bert")).generic
    with pytest.raises(UserError, match="does not support model type 'Linear'"):
        EncoderAdapter(torch.nn.Linear(2, 2))


def test_parse_layers():
    assert parse_layers("all", 6) == [0, 1, 2, 3, 4, 5, 6]
    assert parse_layers("0,6,3", 6) == [0, 3, 6]
    assert parse_layers(" 6 , 0 ,6", 6) == [0, 6]
    assert parse_layers("embeddings,layer_02", 6) == [0, 2]
    with pytest.raises(UserError, match="layer 7 out of range.*0 \\(embeddings\\) to 6"):
        parse_layers("0,7", 6)
    with pytest.raises(UserError, match="layer -1 out of range"):
        parse_layers("-1", 6)
    with pytest.raises(UserError, match="unknown layer 'top'"):
        parse_layers("top", 6)
    with pytest.raises(UserError, match="unknown layer ''"):
        parse_layers("1,,2", 6)
