"""Layer-wise access to an extractive-QA encoder: all hidden states in one pass, and the model *from* a layer.

`EncoderAdapter(model)` wraps a plain HF `*ForQuestionAnswering` model (never a trainer):
  - `hidden_states(input_ids, attention_mask, token_type_ids)` runs the model once and returns the prefix
    cache [h_0 = embedding output, h_1 … h_L = encoder layer outputs], each [batch, pos, d_model];
  - `forward_from(ℓ, hidden, attention_mask)` runs only layers ℓ+1 … L and the QA head on `hidden` (taken as
    h_ℓ) and returns (start_logits, end_logits), each [batch, pos].
Layer index ℓ: 0 = embeddings (the encoder's input, after ELECTRA's projection when it has one), i = output
of encoder layer i; named by `record.layer_name`. The attention mask is built with transformers'
`create_bidirectional_mask`, exactly as each family's own forward does, so the configured attention
implementation (sdpa / eager) and padding are handled the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from transformers.masking_utils import create_bidirectional_mask

from lit_rcqa.attribution.record import layer_name
from lit_rcqa.errors import UserError


@dataclass(frozen=True)
class _Family:
    base: str                 # attribute of the QA model holding the encoder model
    layers: str               # dotted path from the encoder model to its nn.ModuleList of layers
    token_types: bool         # whether the embeddings take token_type_ids


FAMILIES: dict[str, _Family] = {
    "bert": _Family("bert", "encoder.layer", True),
    "roberta": _Family("roberta", "encoder.layer", True),
    "xlm-roberta": _Family("roberta", "encoder.layer", True),
    "electra": _Family("electra", "encoder.layer", True),
    "distilbert": _Family("distilbert", "transformer.layer", False),
}


def _get(obj, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


class EncoderAdapter:
    """Prefix cache and partial forward for one QA model; puts the model in eval mode (dropout off)."""

    def __init__(self, model: nn.Module):
        model_type = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
        if model_type not in FAMILIES:
            raise UserError(f"layer-wise attribution does not support model type {model_type!r}; "
                            f"supported: {', '.join(sorted(FAMILIES))}")
        family = FAMILIES[model_type]
        if not hasattr(model, "qa_outputs") or not hasattr(model, family.base):
            raise UserError(f"{type(model).__name__} is not a {model_type} question-answering model "
                            "(expected an AutoModelForQuestionAnswering with a `qa_outputs` head)")
        self.model = model.eval()
        self.model_type = model_type
        self.config = model.config
        self._family = family
        self._encoder = getattr(model, family.base)
        self.layers: nn.ModuleList = _get(self._encoder, family.layers)
        self.num_layers = len(self.layers)
        self.hidden_size = model.qa_outputs.in_features

    # --- modules, for references that hook a layer (e.g. Captum) ------------------------------------
    def layer_module(self, index: int) -> nn.Module:
        """The module whose output is h_index: the embeddings module for 0, encoder layer i otherwise."""
        self._check(index)
        if index == 0:
            projection = getattr(self._encoder, "embeddings_project", None)
            return projection if projection is not None else self._encoder.embeddings
        return self.layers[index - 1]

    def layer_names(self, indices: list[int]) -> list[str]:
        return [layer_name(i) for i in indices]

    # --- the two passes ---------------------------------------------------------------------------
    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """h_0, the encoder's input: [batch, pos, d_model]."""
        embeddings = self._encoder.embeddings
        if self._family.token_types:
            h = embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        else:
            h = embeddings(input_ids)
        projection = getattr(self._encoder, "embeddings_project", None)
        return projection(h) if projection is not None else h

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      token_type_ids: torch.Tensor | None = None) -> list[torch.Tensor]:
        """[h_0, …, h_L] from one forward pass; each [batch, pos, d_model]."""
        h = self.embed(input_ids, token_type_ids)
        mask = self._mask(h, attention_mask)
        states = [h]
        for layer in self.layers:
            h = layer(h, mask)
            states.append(h)
        return states

    def forward_from(self, layer_index: int, hidden: torch.Tensor,
                     attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Layers layer_index+1 … L and the QA head on `hidden` = h_layer_index [batch, pos, d_model]."""
        self._check(layer_index)
        mask = self._mask(hidden, attention_mask)
        h = hidden
        for layer in self.layers[layer_index:]:
            h = layer(h, mask)
        logits = self.model.qa_outputs(h)  # [batch, pos, 2]; DistilBERT's qa dropout is off in eval
        start, end = logits.unbind(dim=-1)
        return start, end  # [batch, pos] each

    def head_function(self, layer_index: int,
                      attention_mask: torch.Tensor | None = None) -> Callable[[torch.Tensor], tuple]:
        """`forward_from` bound to one layer and mask: hidden -> (start_logits, end_logits)."""
        return lambda hidden: self.forward_from(layer_index, hidden, attention_mask)

    # --- helpers ----------------------------------------------------------------------------------
    def _mask(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None):
        if attention_mask is None:
            return None  # unpadded input: no mask at all, as the model itself does for an all-ones mask
        if attention_mask.shape[0] != hidden.shape[0]:
            attention_mask = attention_mask.expand(hidden.shape[0], -1)  # one example's mask for many rows
        return create_bidirectional_mask(config=self.config, inputs_embeds=hidden, attention_mask=attention_mask)

    def _check(self, index: int) -> None:
        if not 0 <= index <= self.num_layers:
            raise UserError(f"layer index {index} out of range: this model has layers 0 (embeddings) "
                            f"to {self.num_layers} ({layer_name(self.num_layers)})")


def parse_layers(spec: str, num_layers: int) -> list[int]:
    """'all' -> [0, …, L]; '0,6,12' -> [0, 6, 12] (sorted, unique); canonical names are accepted too."""
    text = str(spec).strip().lower()
    if text == "all":
        return list(range(num_layers + 1))
    names = {layer_name(i): i for i in range(num_layers + 1)}
    indices = set()
    for part in (p.strip() for p in text.split(",")):
        if part in names:
            indices.add(names[part])
            continue
        try:
            index = int(part)
        except ValueError:
            raise UserError(f"unknown layer {part!r} in --layers {spec!r}: use 'all', indices 0..{num_layers} "
                            f"(0 = embeddings) or names like {layer_name(0)!r}, {layer_name(1)!r}") from None
        if not 0 <= index <= num_layers:
            raise UserError(f"layer {index} out of range in --layers {spec!r}: this model has layers "
                            f"0 (embeddings) to {num_layers}")
        indices.add(index)
    return sorted(indices)
