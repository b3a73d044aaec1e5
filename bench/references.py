"""Independent references for the attribution code: Captum's LayerIntegratedGradients, set up to match ours.

Captum takes the baseline of a layer to be the layer's output at baseline *inputs*. Our baseline is zero *at
the layer*, so the forward function below multiplies the layer's output by a gate (a forward hook): Captum's
input is the gate, 1 for the real example and 0 for the baseline, which makes the layer baseline exactly 0.
In the interpolation passes Captum's own hook, registered after ours, replaces the layer's output, so the
gate has no further effect there.

Any other rule (the adaptive panels' nodes and weights) goes through Captum's own entry for it:
`IntegratedGradients._attribute(..., step_sizes_and_alphas=(weights, alphas))`, which Captum's batched path
uses; `_RuleIG` passes the given rule to it, and everything else (hooks, scaling, gradients) is Captum's.
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


def _rule_ig(forward, alphas, weights):
    """Captum's IntegratedGradients, integrating at the given nodes with the given weights."""
    from captum.attr import IntegratedGradients

    class _RuleIG(IntegratedGradients):
        def _attribute(self, inputs, baselines, target=None, additional_forward_args=None, n_steps=50,
                       method="gausslegendre", step_sizes_and_alphas=None):
            return super()._attribute(inputs, baselines, target, additional_forward_args, len(alphas), method,
                                      step_sizes_and_alphas=([float(w) for w in weights], [float(a) for a in alphas]))

    return _RuleIG(forward)


def captum_layer_ig(model: nn.Module, layer_module: nn.Module, input_ids: torch.Tensor,
                    token_type_ids: torch.Tensor | None, span: tuple[int, int], *, steps: int = 50,
                    method: str = "gausslegendre", target: str = "prob",
                    internal_batch_size: int | None = None, attention_mask: torch.Tensor | None = None,
                    return_delta: bool = False, rule: tuple | None = None):
    """Captum LIG of F w.r.t. `layer_module`'s output (zero baseline at the layer): [T, d] for one example [T].

    attention_mask [T]: for padded inputs (as commonly run). return_delta: also return the relative completeness
    gap |Σ IG − (F(h) − F(b))| / |F(h) − F(b)| from Captum's own convergence delta. rule: (alphas [m], weights
    [m]) to integrate with instead of `steps` and `method`.
    """
    from captum.attr import LayerIntegratedGradients

    gate: list[torch.Tensor] = []

    def gate_output(module, inputs, output):
        return output * gate[0]

    def forward(gate_value, ids, types, mask):
        gate[:] = [gate_value]  # [k, 1, 1]
        inputs = {"input_ids": ids} | ({} if types is None else {"token_type_ids": types}) \
            | ({} if mask is None else {"attention_mask": mask})
        out = model(**inputs)
        return qa_target(out.start_logits, out.end_logits, span, target)

    handle = layer_module.register_forward_hook(gate_output)
    try:
        lig = LayerIntegratedGradients(forward, layer_module)
        if rule is not None:
            lig.ig = _rule_ig(forward, *rule)
            steps = len(rule[0])
        extra = (input_ids[None], None if token_type_ids is None else token_type_ids[None],
                 None if attention_mask is None else attention_mask[None])
        device = input_ids.device
        out = lig.attribute(torch.ones(1, 1, 1, device=device), baselines=torch.zeros(1, 1, 1, device=device),
                            additional_forward_args=extra, n_steps=steps, method=method,
                            internal_batch_size=internal_batch_size, attribute_to_layer_input=False,
                            return_convergence_delta=return_delta)
    finally:
        handle.remove()
    if not return_delta:
        return out[0].detach()  # [T, d]
    attributions, delta = out
    total = float(attributions.detach().double().sum())
    expected = total - float(delta.double().sum())  # Captum: delta = Σ IG − (F(h) − F(b))
    return attributions[0].detach(), abs(total - expected) / max(abs(expected), 1e-12)
