"""Independent references for the attribution code: Captum's LayerIntegratedGradients, set up to match ours.

Captum takes the baseline of a layer to be the layer's output at baseline *inputs*. Our baseline is zero *at
the layer*, so the forward function below multiplies the layer's output by a gate (a forward hook): Captum's
input is the gate, 1 for the real example and 0 for the baseline, which makes the layer baseline exactly 0.
In the interpolation passes Captum's own hook, registered after ours, replaces the layer's output, so the
gate has no further effect there.
"""

from __future__ import annotations

import torch
from torch import nn


def qa_target(start_logits: torch.Tensor, end_logits: torch.Tensor, span: tuple[int, int],
              target: str = "prob") -> torch.Tensor:
    """F per row, written independently of lit_rcqa: [k, T] logits -> [k]."""
    s, e = span
    if target == "prob":
        return torch.softmax(start_logits, dim=1)[:, s] + torch.softmax(end_logits, dim=1)[:, e]
    return start_logits[:, s] + end_logits[:, e]


def captum_layer_ig(model: nn.Module, layer_module: nn.Module, input_ids: torch.Tensor,
                    token_type_ids: torch.Tensor | None, span: tuple[int, int], *, steps: int = 50,
                    method: str = "gausslegendre", target: str = "prob",
                    internal_batch_size: int | None = None) -> torch.Tensor:
    """Captum LIG of F w.r.t. `layer_module`'s output (zero baseline at the layer): [T, d] for one example [T]."""
    from captum.attr import LayerIntegratedGradients

    gate: list[torch.Tensor] = []

    def gate_output(module, inputs, output):
        return output * gate[0]

    def forward(gate_value, ids, types):
        gate[:] = [gate_value]  # [k, 1, 1]
        out = model(input_ids=ids, token_type_ids=types) if types is not None else model(input_ids=ids)
        return qa_target(out.start_logits, out.end_logits, span, target)

    handle = layer_module.register_forward_hook(gate_output)
    try:
        lig = LayerIntegratedGradients(forward, layer_module)
        extra = (input_ids[None], None if token_type_ids is None else token_type_ids[None])
        attributions = lig.attribute(torch.ones(1, 1, 1), baselines=torch.zeros(1, 1, 1),
                                     additional_forward_args=extra, n_steps=steps, method=method,
                                     internal_batch_size=internal_batch_size, attribute_to_layer_input=False)
    finally:
        handle.remove()
    return attributions[0].detach()  # [T, d]
