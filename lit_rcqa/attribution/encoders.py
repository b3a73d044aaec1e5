"""Family-specific layer stacks: an encoder's hidden states in one pass, and the model from a layer upward.

Each stack takes a plain HF `*ForQuestionAnswering` model and offers
  - `hidden_states(input_ids, attention_mask, token_type_ids)` -> [h_0, …, h_L], each [batch, pos, d_model];
  - `forward_from(ℓ, hidden, attention_mask)` -> (start_logits, end_logits), each [batch, pos]: layers ℓ+1 … L
    and the QA head on `hidden` taken as h_ℓ; nothing below ℓ is run (the prefix cache holds it);
  - `layer_module(ℓ)`: the model's own module whose output is h_ℓ (for references that hook it).
Each one repeats the few lines of its family's forward that build masks and positions, with the same
transformers functions (`masking_utils`, the model's own rotary / relative-position modules), so the configured
attention implementation and padding behave as in the model. h_ℓ is exactly the model's own
`output_hidden_states[ℓ]`:
  bert, roberta, xlm-roberta, electra, distilbert: h_0 = embeddings (after ELECTRA's projection), h_i = layer i.
  albert:     h_0 = embeddings mapped to the hidden size; one shared layer applied L times gives h_1 … h_L
              (with several layer groups or inner layers: every application of an `AlbertLayer`, in order).
  deberta-v2: relative positions and their (normed) embeddings are built here as in the encoder; DeBERTa-v2's
              optional convolution after layer 1 is part of h_1, as in the model.
  modernbert: rotary positions and global / sliding-window masks per layer type; h_L is after the final norm
              (the model reports it so), and the head is ModernBERT's prediction head + classifier.
A model type without a stack here goes through `generic.GenericStack`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from transformers.masking_utils import create_bidirectional_mask, create_bidirectional_sliding_window_mask

from lit_rcqa.errors import UserError

Logits = tuple[torch.Tensor, torch.Tensor]


def _get(obj, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _require(model: nn.Module, model_type: str, *attributes: str) -> None:
    missing = [a for a in attributes if not hasattr(model, a)]
    if missing:
        raise UserError(f"{type(model).__name__} is not a {model_type} question-answering model (no "
                        f"{', '.join(repr(a) for a in missing)}; expected an AutoModelForQuestionAnswering)")


def _mask_batch(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """The 2-D mask [batch, pos] with one row per hidden row (one example's mask serves many rows)."""
    if attention_mask is None or attention_mask.shape[0] == hidden.shape[0]:
        return attention_mask
    return attention_mask.expand(hidden.shape[0], -1)


def _split(logits: torch.Tensor) -> Logits:
    start, end = logits.unbind(dim=-1)  # [batch, pos, 2] -> [batch, pos] each
    return start, end


class BertLikeStack:
    """Embeddings (+ a projection), then layers called as `layer(h, mask)`, then `qa_outputs`."""

    def __init__(self, model: nn.Module, model_type: str, base: str, layers: str, token_types: bool):
        _require(model, model_type, "qa_outputs", base)
        self.model = model
        self.encoder = getattr(model, base)
        self.token_types = token_types
        self.layers: list[nn.Module] = list(_get(self.encoder, layers))  # in the order they run
        self.num_layers = len(self.layers)

    def _projection(self) -> nn.Module | None:
        return getattr(self.encoder, "embeddings_project", None)  # ELECTRA when embedding size != hidden size

    def layer_module(self, index: int) -> nn.Module:
        if index == 0:
            return self._projection() or self.encoder.embeddings
        return self.layers[index - 1]

    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        embeddings = self.encoder.embeddings
        h = embeddings(input_ids=input_ids, token_type_ids=token_type_ids) if self.token_types \
            else embeddings(input_ids)
        projection = self._projection()
        return projection(h) if projection is not None else h  # [batch, pos, d_model]

    def mask(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None):
        if attention_mask is None:
            return None  # unpadded input: no mask at all, as the model itself does for an all-ones mask
        return create_bidirectional_mask(config=self.model.config, inputs_embeds=hidden,
                                         attention_mask=_mask_batch(hidden, attention_mask))

    def hidden_states(self, input_ids, attention_mask=None, token_type_ids=None) -> list[torch.Tensor]:
        h = self.embed(input_ids, token_type_ids)
        mask = self.mask(h, attention_mask)
        states = [h]
        for layer in self.layers:
            h = layer(h, mask)
            states.append(h)
        return states

    def forward_from(self, index: int, hidden: torch.Tensor, attention_mask=None) -> Logits:
        mask = self.mask(hidden, attention_mask)
        h = hidden
        for layer in self.layers[index:]:
            h = layer(h, mask)
        return _split(self.model.qa_outputs(h))  # DistilBERT's qa dropout is off in eval

    def forward_stacked(self, groups: list[tuple[int, torch.Tensor]], tap: dict | None = None) -> Logits:
        """`forward_from` for several layers' unpadded rows in one pass: the rows given as h_ℓ join the batch at
        layer ℓ + 1, so each layer runs once on every row that passes through it. groups: (ℓ, [k_g, pos, d_model])
        in increasing ℓ; returns (start, end) logits [Σ k_g, pos], rows in the groups' order.
        tap: a dict to fill with {ℓ: the batch as it enters layer ℓ + 1 (or the head), [rows so far, pos, d_model]},
        the tensors the graph goes on from, for gradients at every boundary (see `EncoderAdapter.forward_stacked`)."""
        todo, h = list(groups), None
        for index in range(todo[0][0], self.num_layers + 1):
            while todo and todo[0][0] == index:
                rows = todo.pop(0)[1]
                h = rows if h is None else torch.cat([h, rows])
            if tap is not None:
                tap[index] = h
            if index < self.num_layers:
                h = self.layers[index](h, None)
        return _split(self.model.qa_outputs(h))


class AlbertStack(BertLikeStack):
    """ALBERT: the embeddings mapped to the hidden size are h_0; the shared layer(s) run in the model's order."""

    def __init__(self, model: nn.Module, model_type: str):
        _require(model, model_type, "qa_outputs", "albert")
        self.model = model
        self.encoder = model.albert
        self.token_types = True
        config, transformer = model.config, self.encoder.encoder
        groups = transformer.albert_layer_groups
        # AlbertTransformer.forward: application i uses group int(i / (L / n_groups)), each group all its layers.
        L, n_groups = config.num_hidden_layers, config.num_hidden_groups
        self.layers = [layer for i in range(L) for layer in groups[int(i / (L / n_groups))].albert_layers]
        self.num_layers = len(self.layers)

    def layer_module(self, index: int) -> nn.Module:
        """h_0: the embedding mapping; h_i: the shared `AlbertLayer` (called once per layer: hook its i-th call)."""
        return self.encoder.encoder.embedding_hidden_mapping_in if index == 0 else self.layers[index - 1]

    def embed(self, input_ids, token_type_ids):
        h = self.encoder.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)  # [batch, pos, d_embed]
        return self.encoder.encoder.embedding_hidden_mapping_in(h)  # [batch, pos, d_model]


class DebertaV2Stack:
    """DeBERTa-v2/v3: disentangled attention on relative positions built in the encoder, an optional conv."""

    def __init__(self, model: nn.Module, model_type: str):
        _require(model, model_type, "qa_outputs", "deberta")
        if getattr(model.deberta, "z_steps", 0) > 1:
            raise UserError("DeBERTa with z_steps > 1 (its last layer re-applied) is not supported")
        self.model = model
        self.encoder = model.deberta.encoder
        self.layers = list(self.encoder.layer)
        self.num_layers = len(self.layers)

    def layer_module(self, index: int) -> nn.Module:
        if index == 0:
            return self.model.deberta.embeddings
        if index == 1 and self.encoder.conv is not None:
            return self.encoder.conv  # h_1 is the conv's output
        return self.layers[index - 1]

    @staticmethod
    def _input_mask(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """[batch or 1, pos]: the model's all-ones default when there is no padding (one row serves them all)."""
        if attention_mask is None:
            return torch.ones(1, hidden.shape[1], device=hidden.device)
        return _mask_batch(hidden, attention_mask)

    def _run(self, first: int, hidden: torch.Tensor, attention_mask, states: list | None) -> torch.Tensor:
        """Layers first+1 … L on h_first, as `DebertaV2Encoder.forward` runs them (`states` collects outputs)."""
        input_mask = self._input_mask(hidden, attention_mask)
        mask = self.encoder.get_attention_mask(input_mask)       # [batch or 1, 1, pos, pos]
        relative_pos = self.encoder.get_rel_pos(hidden)            # [1, pos, pos] or None
        rel_embeddings = self.encoder.get_rel_embedding()          # [2·buckets, d_model] or None
        h = hidden
        for i in range(first, self.num_layers):
            out, _ = self.layers[i](h, mask, query_states=None, relative_pos=relative_pos,
                                    rel_embeddings=rel_embeddings, output_attentions=False)
            if i == 0 and self.encoder.conv is not None:
                out = self.encoder.conv(hidden, out, input_mask)  # the conv sees the encoder's input, h_0
            h = out
            if states is not None:
                states.append(h)
        return h

    def hidden_states(self, input_ids, attention_mask=None, token_type_ids=None) -> list[torch.Tensor]:
        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        h = self.model.deberta.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, mask=mask)
        states = [h]
        self._run(0, h, attention_mask, states)
        return states

    def forward_from(self, index: int, hidden: torch.Tensor, attention_mask=None) -> Logits:
        return _split(self.model.qa_outputs(self._run(index, hidden, attention_mask, None)))


class ModernBertStack:
    """ModernBERT: rotary positions, global / sliding-window attention per layer type, final norm, its own head."""

    def __init__(self, model: nn.Module, model_type: str):
        _require(model, model_type, "model", "head", "classifier")
        self.model = model
        self.base = model.model
        self.layers = list(self.base.layers)
        self.num_layers = len(self.layers)

    def layer_module(self, index: int) -> nn.Module:
        if index == 0:
            return self.base.embeddings
        return self.base.final_norm if index == self.num_layers else self.layers[index - 1]

    def _context(self, hidden: torch.Tensor, attention_mask):
        """Masks and rotary (cos, sin) per layer type, as `ModernBertModel.forward` builds them."""
        mask = _mask_batch(hidden, attention_mask)
        like = hidden if mask is not None else hidden[:1]  # no padding: one row's masks serve every row
        kwargs = {"config": self.model.config, "inputs_embeds": like, "attention_mask": mask}
        masks = {"full_attention": create_bidirectional_mask(**kwargs),
                 "sliding_attention": create_bidirectional_sliding_window_mask(**kwargs)}
        position_ids = torch.arange(hidden.shape[1], device=hidden.device)[None]  # [1, pos]
        rotary = {kind: self.base.rotary_emb(hidden, position_ids, kind) for kind in set(self.model.config.layer_types)}
        return masks, rotary

    def _run(self, first: int, hidden: torch.Tensor, attention_mask, states: list | None) -> torch.Tensor:
        h = hidden
        if first == self.num_layers:
            return h  # already after the final norm
        masks, rotary = self._context(hidden, attention_mask)
        for i in range(first, self.num_layers):
            layer = self.layers[i]
            h = layer(h, attention_mask=masks[layer.attention_type], position_embeddings=rotary[layer.attention_type])
            if i == self.num_layers - 1:
                h = self.base.final_norm(h)
            if states is not None:
                states.append(h)
        return h

    def hidden_states(self, input_ids, attention_mask=None, token_type_ids=None) -> list[torch.Tensor]:
        h = self.base.embeddings(input_ids=input_ids)  # ModernBERT has no token types
        states = [h]
        self._run(0, h, attention_mask, states)
        return states

    def forward_from(self, index: int, hidden: torch.Tensor, attention_mask=None) -> Logits:
        h = self._run(index, hidden, attention_mask, None)
        return _split(self.model.classifier(self.model.drop(self.model.head(h))))


def _bert_like(base: str, layers: str, token_types: bool) -> Callable[[nn.Module, str], BertLikeStack]:
    return lambda model, model_type: BertLikeStack(model, model_type, base, layers, token_types)


# model_type -> stack; any other model type goes through the generic path
STACKS: dict[str, Callable[[nn.Module, str], object]] = {
    "bert": _bert_like("bert", "encoder.layer", True),
    "roberta": _bert_like("roberta", "encoder.layer", True),
    "xlm-roberta": _bert_like("roberta", "encoder.layer", True),
    "electra": _bert_like("electra", "encoder.layer", True),
    "distilbert": _bert_like("distilbert", "transformer.layer", False),
    "albert": AlbertStack,
    "deberta-v2": DebertaV2Stack,
    "modernbert": ModernBertStack,
}
