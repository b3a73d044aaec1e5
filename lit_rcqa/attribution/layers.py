"""Layer-wise access to an extractive-QA encoder: all hidden states in one pass, and the model *from* a layer.

`EncoderAdapter(model)` wraps a plain HF `*ForQuestionAnswering` model (never a trainer):
  - `hidden_states(input_ids, attention_mask, token_type_ids)` runs the model once and returns the prefix
    cache [h_0 = embedding output, h_1 … h_L = encoder layer outputs], each [batch, pos, d_model];
  - `forward_from(ℓ, hidden, attention_mask)` runs only layers ℓ+1 … L and the QA head on `hidden` (taken as
    h_ℓ) and returns (start_logits, end_logits), each [batch, pos]. Nothing below ℓ is recomputed.
Layer index ℓ: 0 = embeddings (the encoder's input), i = output of encoder layer i; named by
`record.layer_name`. The work is done by a layer stack: a family's own (`encoders.STACKS`: bert, roberta,
xlm-roberta, electra, distilbert, albert, deberta-v2, modernbert), or for any other model type the generic
path (`generic.GenericStack`), which runs the model's own forward with the layers below ℓ skipped; a model
neither can handle is refused with one error naming what is missing.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from lit_rcqa.attribution.encoders import STACKS
from lit_rcqa.attribution.generic import GenericStack
from lit_rcqa.attribution.record import layer_name
from lit_rcqa.errors import UserError

FAMILIES = tuple(sorted(STACKS))  # model types with a stack of their own


class EncoderAdapter:
    """Prefix cache and partial forward for one QA model; puts the model in eval mode (dropout off).

    generic=True: use the generic path even where the family has a stack of its own (for comparisons).
    """

    def __init__(self, model: nn.Module, *, generic: bool = False):
        config = getattr(model, "config", None)
        model_type = getattr(config, "model_type", None) or type(model).__name__
        if config is None or not isinstance(model, nn.Module):
            raise UserError(f"layer-wise attribution does not support model type {model_type!r}: not a transformers "
                            "question-answering model (no config)")
        self.model = model.eval()
        self.model_type = model_type
        self.config = config
        self.generic = generic or model_type not in STACKS
        self.stack = GenericStack(model, model_type) if self.generic else STACKS[model_type](model, model_type)
        self.num_layers: int = self.stack.num_layers

    # --- modules, for references that hook a layer (e.g. Captum) ------------------------------------
    def layer_module(self, index: int) -> nn.Module:
        """The model's module whose output is h_index (family stacks; see `encoders` for ALBERT's shared layer)."""
        self.check_index(index)
        return self.stack.layer_module(index)

    def layer_names(self, indices: list[int]) -> list[str]:
        return [layer_name(i) for i in indices]

    # --- the two passes ---------------------------------------------------------------------------
    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      token_type_ids: torch.Tensor | None = None) -> list[torch.Tensor]:
        """[h_0, …, h_L] from one forward pass; each [batch, pos, d_model]."""
        return self.stack.hidden_states(input_ids, attention_mask, token_type_ids)

    def forward_from(self, layer_index: int, hidden: torch.Tensor,
                     attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Layers layer_index+1 … L and the QA head on `hidden` = h_layer_index [batch, pos, d_model]."""
        self.check_index(layer_index)
        return self.stack.forward_from(layer_index, hidden, attention_mask)  # [batch, pos] each

    @property
    def taps(self) -> bool:
        """Whether `forward_stacked` can fill a `tap` (the stacks that run the groups as one batch)."""
        return getattr(self.stack, "forward_stacked", None) is not None

    def forward_stacked(self, groups: list[tuple[int, torch.Tensor]],
                        tap: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`forward_from` for several layers' unpadded rows at once: groups (ℓ, [k_g, pos, d_model]) in increasing ℓ
        -> (start_logits, end_logits) [Σ k_g, pos], rows in the groups' order. Stacks that can (the BERT-like
        families) run each layer once on every row passing through it; the others run the groups one by one.
        tap (only where `taps`): a dict filled with {ℓ: the batch at h_ℓ, [rows so far, pos, d_model]}, from the
        first group's ℓ to L; rows keep the groups' order, so a row of a lower group is, at every boundary above
        it, that row carried up — the gradient of the outputs w.r.t. tap[ℓ] is ∇F at h_ℓ for every row in it."""
        for index, _ in groups:
            self.check_index(index)
        stacked = getattr(self.stack, "forward_stacked", None)
        if stacked is not None:
            return stacked(groups) if tap is None else stacked(groups, tap)
        if tap is not None:
            raise ValueError("this stack cannot tap its boundaries (see EncoderAdapter.taps)")
        logits = [self.stack.forward_from(index, rows, None) for index, rows in groups]
        return torch.cat([start for start, _ in logits]), torch.cat([end for _, end in logits])

    def head_function(self, layer_index: int,
                      attention_mask: torch.Tensor | None = None) -> Callable[[torch.Tensor], tuple]:
        """`forward_from` bound to one layer and mask: hidden -> (start_logits, end_logits)."""
        return lambda hidden: self.forward_from(layer_index, hidden, attention_mask)

    def check_index(self, index: int) -> None:
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
