"""The generic layer stack: any `*ForQuestionAnswering` encoder whose layers sit in one nn.ModuleList.

The model's own forward does all the work, so masks, position encodings, final norms and the QA head are
exactly the model's; only the layer inputs and outputs are touched, through the model's own modules:
  - `hidden_states`: one forward with hooks on the layers: h_0 = the first layer's hidden-state input,
    h_i = layer i's hidden-state output (its first element when it returns a tuple);
  - `forward_from(ℓ, hidden)`: one forward in which layers 1 … ℓ are stand-ins that return `hidden` (no
    computation: nothing below ℓ is re-run), or, for ℓ = 0, the first layer's input is replaced by `hidden`.
    The stand-ins take the layers' places in the ModuleList only inside `_resumed_at`, which always puts the
    layers back; they keep the list's length and indices and pass attribute reads (e.g. a layer's attention
    type) to the layer they stand for.
The token ids this forward sees only shape the masks and positions (its embedding output is replaced): a
filler id, with one row when there is no padding mask (the masks then broadcast over the rows of `hidden`).

A model's forward may do more between layers than call them in order (e.g. DeBERTa-v2's conv after layer 1).
So the stack checks itself once when built, on a short random padded batch: every ℓ must reproduce the
model's own logits from its own hidden states; if not, it refuses the model with one error saying so.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from lit_rcqa.errors import UserError

Logits = tuple[torch.Tensor, torch.Tensor]


def find_layers(model: nn.Module, model_type: str) -> tuple[str, nn.ModuleList]:
    """The ModuleList holding the encoder's `config.num_hidden_layers` layers: (dotted path, list)."""
    n = getattr(model.config, "num_hidden_layers", None)
    if not isinstance(n, int) or n < 1:
        raise UserError(f"model type {model_type!r}: its config has no num_hidden_layers, so its layers "
                        "cannot be found for layer-wise attribution")
    candidates = [(name, module) for name, module in model.named_modules()
                  if isinstance(module, nn.ModuleList) and len(module) == n
                  and len({type(layer) for layer in module}) == 1 and not isinstance(module[0], nn.ModuleList)]
    if not candidates:
        raise UserError(f"model type {model_type!r}: no nn.ModuleList of its {n} layers (config.num_hidden_layers) "
                        f"found in {type(model).__name__}; layer-wise attribution needs the encoder's layers in one "
                        "ModuleList, applied once each")
    return min(candidates, key=lambda c: c[0].count("."))  # the shallowest: the encoder's, not a layer's parts


@dataclass(frozen=True)
class _LayerIO:
    """Where a layer takes its hidden state and how it returns it (learned from the model's own forward)."""

    input_key: int | str   # 0: first positional argument; a name: that keyword argument
    output_len: int        # 0: the layer returns a tensor; n: a tuple of n items, the hidden state first

    def shaped(self, hidden: torch.Tensor):
        return hidden if self.output_len == 0 else (hidden,) + (None,) * (self.output_len - 1)


def _hidden_input(args: tuple, kwargs: dict) -> int | str | None:
    if args and torch.is_tensor(args[0]):
        return 0
    return "hidden_states" if torch.is_tensor(kwargs.get("hidden_states")) else None


class _StandIn(nn.Module):
    """Takes a skipped layer's place for one forward: returns the given output, computes nothing."""

    def __init__(self, layer: nn.Module, output):
        super().__init__()
        object.__setattr__(self, "_layer", layer)    # not a submodule: its parameters are not counted twice
        object.__setattr__(self, "_output", output)

    def forward(self, *args, **kwargs):
        return self._output

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:  # what the model's loop reads from a layer, e.g. ModernBERT's `attention_type`
            return getattr(object.__getattribute__(self, "_layer"), name)


class GenericStack:
    """Prefix cache and partial forward through the model's own forward (see the module docstring)."""

    def __init__(self, model: nn.Module, model_type: str):
        if getattr(model, "config", None) is None:
            raise UserError(f"layer-wise attribution does not support model type {model_type!r}: not a transformers "
                            "model (no config)")
        self.model, self.model_type = model, model_type
        self.path, self.layer_list = find_layers(model, model_type)
        self.layers: list[nn.Module] = list(self.layer_list)
        self.num_layers = len(self.layers)
        self._io: _LayerIO | None = None  # learned by the first `hidden_states`
        pad = model.config.pad_token_id
        self._filler = 1 if pad == 0 else 0
        self._self_check()

    def layer_module(self, index: int) -> nn.Module:
        """The layer whose output is h_index (index >= 1; h_0 is known only as the first layer's input)."""
        if index == 0:
            raise ValueError(f"model type {self.model_type!r} (generic path): no module is known to output h_0, "
                             f"the input of {self.path}[0]; hook that layer's input instead")
        return self.layers[index - 1]

    # --- the two passes -----------------------------------------------------------------------------------------
    def hidden_states(self, input_ids, attention_mask=None, token_type_ids=None) -> list[torch.Tensor]:
        """[h_0, …, h_L] from one forward of the model; each [batch, pos, d_model]."""
        states: list[torch.Tensor | None] = [None] * (self.num_layers + 1)
        io: dict = {}

        def take_input(module, args, kwargs):
            if states[0] is None:
                key = _hidden_input(args, kwargs)
                if key is None:
                    raise UserError(f"model type {self.model_type!r}: cannot tell which argument of "
                                    f"{self.path}[0] ({type(module).__name__}) is its hidden state")
                io["input_key"] = key
                states[0] = (args[0] if key == 0 else kwargs[key]).clone()

        def take_output(index):
            def hook(module, args, output):
                hidden = output if torch.is_tensor(output) else \
                    output[0] if isinstance(output, (tuple, list)) and output and torch.is_tensor(output[0]) else None
                if hidden is None:
                    raise UserError(f"model type {self.model_type!r}: {self.path}[{index - 1}] "
                                    f"({type(module).__name__}) returns no hidden-state tensor")
                io["output_len"] = 0 if torch.is_tensor(output) else len(output)
                states[index] = hidden.clone()
            return hook

        handles = [self.layers[0].register_forward_pre_hook(take_input, with_kwargs=True)]
        handles += [layer.register_forward_hook(take_output(i + 1)) for i, layer in enumerate(self.layers)]
        try:
            self._call(input_ids, attention_mask, token_type_ids)
        finally:
            for handle in handles:
                handle.remove()
        if any(s is None for s in states):
            missing = [i for i, s in enumerate(states) if s is None]
            raise UserError(f"model type {self.model_type!r}: its forward did not run every layer of {self.path} "
                            f"(no hidden state for layers {missing})")
        self._io = _LayerIO(io["input_key"], io["output_len"])
        return states

    def forward_from(self, index: int, hidden: torch.Tensor, attention_mask=None) -> Logits:
        """Layers index+1 … L and the head of the model's own forward on `hidden` = h_index [batch, pos, d]."""
        mask = attention_mask
        if mask is not None and mask.shape[0] != hidden.shape[0]:
            mask = mask.expand(hidden.shape[0], -1)  # one example's mask for many rows
        rows = hidden.shape[0] if mask is not None else 1  # unpadded: one row of ids, masks broadcast
        ids = torch.full((rows, hidden.shape[1]), self._filler, dtype=torch.long, device=hidden.device)
        with self._resumed_at(index, hidden):
            return self._call(ids, mask, None)

    # --- helpers -------------------------------------------------------------------------------------------------
    def _call(self, input_ids, attention_mask, token_type_ids) -> Logits:
        inputs = {"input_ids": input_ids}
        if attention_mask is not None:
            inputs["attention_mask"] = attention_mask
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        out = self.model(**inputs)
        start, end = getattr(out, "start_logits", None), getattr(out, "end_logits", None)
        if start is None or end is None:
            raise UserError(f"model type {self.model_type!r}: {type(self.model).__name__} returns no start_logits / "
                            "end_logits; layer-wise attribution needs an extractive *ForQuestionAnswering model")
        return start, end  # [batch, pos] each

    @contextlib.contextmanager
    def _resumed_at(self, index: int, hidden: torch.Tensor):
        """Inside: the model's forward starts at h_index = `hidden`; the layers are always put back on leaving."""
        if self._io is None:
            raise RuntimeError("hidden_states must run before forward_from")  # the constructor's check does
        if index == 0:
            key = self._io.input_key

            def replace_input(module, args, kwargs):
                if key == 0:
                    return (hidden, *args[1:]), kwargs
                return args, {**kwargs, key: hidden}

            handle = self.layers[0].register_forward_pre_hook(replace_input, with_kwargs=True)
            try:
                yield
            finally:
                handle.remove()
            return
        output = self._io.shaped(hidden)
        try:
            for i in range(index):
                self.layer_list[i] = _StandIn(self.layers[i], output)
            yield
        finally:
            for i in range(index):
                self.layer_list[i] = self.layers[i]

    @torch.no_grad()
    def _self_check(self, length: int = 8) -> None:
        """Every ℓ reproduces the model's own logits, padded (batch of 2) and unpadded (one row, two copies)."""
        param = next(self.model.parameters())
        vocab = int(getattr(self.model.config, "vocab_size", 100) or 100)
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(0, vocab, (2, length), generator=g).to(param.device)
        mask = torch.ones_like(ids)
        mask[1, length - 3:] = 0
        real = mask.bool()
        tol = max(1e-4, 100 * torch.finfo(param.dtype).eps)
        for inputs, padded in (((ids, mask), True), ((ids[:1], None), False)):
            reference = self._call(*inputs, None)  # [rows, pos] each
            for index, h in enumerate(self.hidden_states(*inputs, None)):
                if padded:
                    ours, theirs = [x[real] for x in self.forward_from(index, h, mask)], [x[real] for x in reference]
                else:  # IG's use: many rows of one unpadded example
                    ours, theirs = self.forward_from(index, h.expand(2, -1, -1)), [x.expand(2, -1) for x in reference]
                for a, b in zip(ours, theirs):
                    diff = float((a.float() - b.float()).abs().max())
                    if not diff <= tol * max(1.0, float(b.abs().max())):
                        raise UserError(
                            f"model type {self.model_type!r}: the generic layer-wise path does not reproduce the "
                            f"model's own logits from layer {index} (max |diff| {diff:.2e}): its forward does more "
                            f"between the layers of {self.path} than calling each once in order; it needs a "
                            "stack of its own in lit_rcqa/attribution/encoders.py")
