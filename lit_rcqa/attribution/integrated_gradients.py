"""Layer-wise Integrated Gradients for one extractive-QA example, prefix-cached.

For each requested layer ℓ (0 = embeddings, i = encoder layer i) with hidden states h_ℓ [T, d] and
baseline b (default 0):
    IG_ℓ = (h_ℓ − b) ⊙ Σ_k w_k ∂F/∂h (b + α_k (h_ℓ − b))
    F    = softmax(start_logits)[ŝ] + softmax(end_logits)[ê]     (or the two logits; `target="logit"`)
where (ŝ, ê) is the model's own best span (or a given one) and (α_k, w_k) come from `rules`. Steps:
  1. one no-grad forward through the whole model keeps [h_0 … h_L] (the prefix cache) and the logits;
  2. the explained span and F(h) come from those logits;
  3. per layer, the interpolated states run through layers ℓ+1 … L only (`EncoderAdapter.forward_from`),
     m rows at a time in chunks of at most `max_batch_tokens` tokens; one autograd.grad per chunk;
  4. importance = ‖IG_ℓ‖₂ over d, signed = Σ_d IG_ℓ, completeness gap
     δ_ℓ = |Σ IG_ℓ − (F(h_ℓ) − F(b))| / |F(h_ℓ) − F(b)|.
With `tolerance` (analyze.py's default, 0.01), step 3 is adaptive by default (`refine_method="adaptive"`,
adaptive.py): Gauss–Lobatto panels on [0, 1] whose exact errors on φ(α) = ⟨∇F, h − b⟩ are known from F at the
panel ends, refined where they are wrong until Σ|panel errors| ≤ tolerance · |F(h) − F(b)| (so δ_ℓ ≤ tolerance)
or `max_steps` evaluations; every round packs all layers' new rows into full chunks of one stacked
forward/backward (`EncoderAdapter.forward_stacked`). `result.converged` says which layers met the target.
The older schedules remain (`refine_method` a rule name or "romberg"): they walk `rules.refinement_schedule`
top-down, each layer starting at the points the layer above ended with.

Usage:  result = integrated_gradients(model, input_ids, token_type_ids=tt, layers="all", passage=(p0, p1))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from lit_rcqa.attribution.adaptive import CRITERIA, SPLITS, AdaptiveMesh, check_panels
from lit_rcqa.attribution.layers import EncoderAdapter, parse_layers
from lit_rcqa.attribution import rules as integration_rules
from lit_rcqa.attribution.rules import DEFAULT_RULE, RefinementLevel, integration_rule, refinement_schedule
from lit_rcqa.errors import UserError
from lit_rcqa.evaluation.postprocess import DEFAULT_POSTPROCESS

Baseline = torch.Tensor | Callable[[int, torch.Tensor], torch.Tensor] | None


@dataclass(frozen=True)
class IGSettings:
    steps: int = 50                  # m, the integration points per layer (fixed mode)
    method: str = DEFAULT_RULE       # integration rule: a name registered in rules.RULES
    target: str = "prob"             # "prob": F = p_start[ŝ] + p_end[ê]; "logit": start[ŝ] + end[ê]
    tolerance: float | None = None   # accuracy target on δ per layer; None = fixed `steps`
    refine_method: str = "adaptive"  # with a tolerance: "adaptive" (Gauss–Lobatto panels refined where their
                                     # known error is, see adaptive.py), a rule in RULES (doubling) or nested
                                     # "romberg"/"trapezoid" (see rules.py for the measurements)
    min_steps: int = 5               # first level of a doubling/nested schedule (tolerance mode)
    max_steps: int = 257             # cap on gradient evaluations per layer (tolerance mode)
    panel_points: int = 3            # adaptive: Gauss–Lobatto points per panel, ends included (3: Simpson; the
                                     # IG integrand is a few sharp spikes, where cheap local splits win, rules.py)
    criterion: str = "panels"        # adaptive: hold Σ|panel errors| ("panels") or the gap alone ("total") to tol
    warm_start: bool = False         # adaptive: a lower layer starts on the panels the layer above ended with
    breakpoints: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # adaptive: the initial panels' ends (several:
                                     # a lone low-order panel's error can vanish by chance, see rules.py)
    split: str = "lazy"              # adaptive: "lazy" (a failing panel becomes bare trapezoid panels between its
                                     # nodes for free; only those that still fail get nodes), "nodes" (every
                                     # sub-panel gets nodes) or "halves" (split at the midpoint); see adaptive.py
    refine_fraction: float = 0.9     # adaptive: each round refines the worst panels until the others hold at most
                                     # this share of the error budget (larger: fewer nodes per round, more rounds)
    max_batch_tokens: int = 16384    # interpolation rows × tokens per forward/backward chunk (memory budget)
    max_answer_length: int = DEFAULT_POSTPROCESS.max_answer_length  # longest span IG picks itself, in tokens
                                     # (run_ig sets the training run's: its answers were chosen under it)

    def __post_init__(self):
        if self.target not in ("prob", "logit"):
            raise UserError(f"unknown IG target {self.target!r}; choose 'prob' or 'logit'")
        integration_rules.check(self.method, self.steps)
        if self.tolerance is not None:
            if self.refine_method not in ("adaptive",) + integration_rules.refinement_names():
                raise UserError(f"unknown refinement rule {self.refine_method!r}; "
                                f"choose one of adaptive, {', '.join(integration_rules.refinement_names())}")
            if self.criterion not in CRITERIA:
                raise UserError(f"unknown convergence criterion {self.criterion!r}; choose one of "
                                f"{', '.join(CRITERIA)}")
            if not self.tolerance > 0:
                raise UserError(f"IG tolerance must be > 0, got {self.tolerance}")
            if self.split not in SPLITS:
                raise UserError(f"unknown panel split {self.split!r}; choose one of {', '.join(SPLITS)}")
            check_panels(self.panel_points, self.breakpoints, name="panel_points ")
            if not 0.0 <= self.refine_fraction < 1.0:
                raise UserError("refine_fraction (the refinement fraction) must be in [0, 1), "
                                f"got {self.refine_fraction}")


@dataclass
class IGResult:
    layers: list[int]                # layer indices, in order (name them with record.layer_name)
    importance: np.ndarray           # [n_layers, T] float32: ‖IG_ℓ‖₂ over the hidden dimension
    signed: np.ndarray               # [n_layers, T] float32: Σ IG_ℓ over the hidden dimension
    delta: np.ndarray                # [n_layers] float64: completeness gap
    steps: np.ndarray                # [n_layers] int32: gradient evaluations used per layer
    pred_start: int                  # explained span, token indices (inclusive)
    pred_end: int
    start_prob: float                # softmax(start_logits)[pred_start]
    end_prob: float                  # softmax(end_logits)[pred_end]
    target_value: float              # F(h), the explained quantity at the real input
    baseline_value: np.ndarray       # [n_layers] float64: F(b) per layer
    attribution_sum: np.ndarray      # [n_layers] float64: Σ IG_ℓ
    hidden: list[np.ndarray] | None = field(default=None, repr=False)  # [T, d] h_ℓ per layer, if asked
    converged: np.ndarray | None = None  # [n_layers] bool: δ ≤ settings.tolerance (None: a fixed rule, no target)
    rules: list[tuple[np.ndarray, np.ndarray]] | None = field(default=None, repr=False)  # adaptive: the final
    #                                 (alphas [N], weights [N]) per layer, every evaluated node (unused ones weigh 0)


def best_spans(start_logits: torch.Tensor, end_logits: torch.Tensor, passage,
               max_answer_length: int = DEFAULT_POSTPROCESS.max_answer_length) -> torch.Tensor:
    """[B, T] start and end logits -> [B, 2] (start, end) of each row's argmax of start[i] + end[j] over passage
    tokens i <= j < i + max_answer_length. passage: a bool mask [T] or (start, end) half-open token indices."""
    T = start_logits.shape[-1]
    i = torch.arange(T, device=start_logits.device)
    inside = _passage_mask(passage, None, T).to(start_logits.device)  # [T]
    allowed = (inside[:, None] & inside[None, :] & (i[None, :] >= i[:, None])
               & (i[None, :] - i[:, None] < max_answer_length))  # [T, T]
    if not allowed.any():
        raise UserError("no passage tokens to predict a span from (empty passage mask)")
    scores = start_logits[:, :, None] + end_logits[:, None, :]  # [B, T, T]
    flat = scores.masked_fill(~allowed, float("-inf")).flatten(1).argmax(dim=1)  # [B]
    return torch.stack([flat // T, flat % T], dim=1)


def best_span(start_logits: torch.Tensor, end_logits: torch.Tensor, passage,
              max_answer_length: int = DEFAULT_POSTPROCESS.max_answer_length) -> tuple[int, int]:
    """`best_spans` of one row: start and end logits [T] -> (start, end)."""
    s, e = best_spans(start_logits[None], end_logits[None], passage, max_answer_length)[0].tolist()
    return s, e


def _passage_mask(passage, token_type_ids: torch.Tensor | None, T: int) -> torch.Tensor:
    """Bool [T]: a given mask, or (start, end) half-open indices, or token type 1 minus the final [SEP]."""
    if passage is None:
        if token_type_ids is None:
            raise UserError("pass `passage` (a bool mask or (start, end) indices) when the input has no "
                            "token_type_ids to find the passage from")
        mask = token_type_ids.bool().clone()
        mask[-1] = False
        return mask
    if isinstance(passage, tuple):
        mask = torch.zeros(T, dtype=torch.bool)
        mask[passage[0]:passage[1]] = True
        return mask
    return torch.as_tensor(passage, dtype=torch.bool)


def _target(start: torch.Tensor, end: torch.Tensor, s: int, e: int, kind: str) -> torch.Tensor:
    """F per row: start, end [k, T] -> [k]."""
    if kind == "prob":
        return start.softmax(-1)[:, s] + end.softmax(-1)[:, e]
    return start[:, s] + end[:, e]


class _LayerIG:
    """IG for one layer of one example: evaluates points (alphas), keeps one weighted gradient sum per generation."""

    def __init__(self, adapter: EncoderAdapter, layer: int, h: torch.Tensor, b: torch.Tensor,
                 span: tuple[int, int], settings: IGSettings):
        self.adapter, self.layer, self.span, self.settings = adapter, layer, span, settings
        self.b = b                      # [T, d]
        self.diff = h - b               # [T, d]
        self.sums: list[torch.Tensor] = []  # per generation: Σ w_k ∂F/∂h(b + α_k diff), [T, d]
        self.rows = max(1, settings.max_batch_tokens // h.shape[0])
        self.baseline_value: float | None = None  # F(b): an extra row of the first chunk (no pass of its own)

    @torch.enable_grad()
    def add(self, level: RefinementLevel) -> None:
        # The rule lives on the CPU (numpy); the interpolation runs where the hidden states are.
        alphas = torch.as_tensor(level.new_alphas, dtype=self.b.dtype, device=self.b.device)
        weights = torch.as_tensor(level.new_weights, dtype=self.b.dtype, device=self.b.device)
        generations = torch.as_tensor(level.new_generations, dtype=torch.long, device=self.b.device)
        while len(self.sums) <= int(generations.max()):
            self.sums.append(torch.zeros_like(self.diff))
        n_chunks = -(-len(alphas) // self.rows)
        bounds = np.linspace(0, len(alphas), n_chunks + 1).round().astype(int)  # equal chunks: no tiny last one
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            a, w, g = alphas[lo:hi], weights[lo:hi], generations[lo:hi]
            first = self.baseline_value is None
            if first:  # F(b) rides along as row 0 (α = 0, weight 0): on a GPU a pass of its own costs as much
                a, w = torch.cat([a.new_zeros(1), a]), torch.cat([w.new_zeros(1), w])
            x = (self.b + a[:, None, None] * self.diff).requires_grad_(True)  # [k(+1), T, d]
            start, end = self.adapter.forward_from(self.layer, x)               # [k(+1), T] each
            f = _target(start, end, *self.span, self.settings.target)          # [k(+1)]
            # rows are independent, so the gradient of Σ_k w_k F_k w.r.t. x holds each row's weighted gradient
            (grad,) = torch.autograd.grad((f * w).sum(), x)
            if first:
                self.baseline_value = float(f[0].detach())
                grad = grad[1:]
            if bool((g == g[0]).all()):
                self.sums[int(g[0])] += grad.sum(0)
            else:
                for gen in g.unique().tolist():
                    self.sums[gen] += grad[g == gen].sum(0)

    def attribution(self, coeffs: np.ndarray) -> torch.Tensor:
        """IG_ℓ [T, d] = diff ⊙ Σ_g coeffs[g] · sums[g]."""
        path_grad = sum(float(c) * s for c, s in zip(coeffs, self.sums) if c != 0.0)
        return self.diff * path_grad


@torch.enable_grad()
def _gradient_rows(adapter: EncoderAdapter, layer: int, b: torch.Tensor, diff: torch.Tensor, alphas: np.ndarray,
                   span: tuple[int, int], target: str, rows: int) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """F(α_k) [k], φ(α_k) = ⟨∇F, diff⟩ [k] (float64) and the gradients ∇F(b + α_k diff) [k, T, d], in chunks."""
    a_all = torch.as_tensor(alphas, dtype=b.dtype, device=b.device)
    n_chunks = -(-len(alphas) // rows)
    bounds = np.linspace(0, len(alphas), n_chunks + 1).round().astype(int)  # equal chunks: no tiny last one
    F, grads = [], []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        x = (b + a_all[lo:hi, None, None] * diff).requires_grad_(True)  # [k, T, d]
        start, end = adapter.forward_from(layer, x)                     # [k, T] each
        f = _target(start, end, *span, target)                          # [k]
        (grad,) = torch.autograd.grad(f.sum(), x)                       # rows are independent: [k, T, d]
        F.append(f.detach())
        grads.append(grad)
    grads_t = torch.cat(grads)
    return torch.cat(F).double().cpu().numpy(), _path_derivative(grads_t, diff), grads_t


def _path_derivative(grads: torch.Tensor, diff: torch.Tensor) -> np.ndarray:
    """φ(α_k) = ⟨∇F(b + α_k diff), diff⟩ [k] in float64, from the gradients [k, T, d]."""
    return (grads * diff).sum(dim=(1, 2), dtype=torch.float64).cpu().numpy()


def _adaptive_layer(adapter: EncoderAdapter, layer: int, h: torch.Tensor, b: torch.Tensor, span: tuple[int, int],
                    settings: IGSettings, breakpoints: np.ndarray | None) -> tuple[torch.Tensor, float, AdaptiveMesh]:
    """IG_ℓ [T, d], F(b) and the final mesh, by adaptive Gauss–Lobatto panels (adaptive.py) to the tolerance."""
    diff = h - b  # [T, d]
    rows = max(1, settings.max_batch_tokens // h.shape[0])
    mesh = AdaptiveMesh(settings.tolerance, settings.max_steps, settings.panel_points,
                        settings.breakpoints if breakpoints is None else breakpoints, settings.criterion,
                        settings.split, settings.refine_fraction)
    grads = []  # [k, T, d] per round: every node's gradient, since a node's weight changes when panels split
    while not mesh.done:
        F, phi, g = _gradient_rows(adapter, layer, b, diff, mesh.pending(), span, settings.target, rows)
        grads.append(g)
        mesh.record(F, phi)
    weights = torch.as_tensor(mesh.node_weights(), dtype=h.dtype, device=h.device)  # [N]
    path_grad = torch.einsum("n,ntd->td", weights, torch.cat(grads))  # [T, d]
    return diff * path_grad, mesh.F[mesh.alphas.index(0.0)], mesh


@torch.enable_grad()
def _stacked_gradient_rows(adapter: EncoderAdapter, groups: list[tuple[int, torch.Tensor, torch.Tensor, np.ndarray]],
                           span: tuple[int, int], target: str,
                           carried: tuple[int, int, list[tuple[int, torch.Tensor]]] | None = None
                           ) -> tuple[list[tuple[np.ndarray, np.ndarray, torch.Tensor]], dict]:
    """`_gradient_rows` for several layers in one forward/backward (`forward_stacked`): groups (ℓ, b, diff, alphas)
    in increasing ℓ; per group F [k], φ [k] (float64) and the gradients [k, T, d].
    carried: (group g, row j, [(k, diff_k)]): the row j of group g, carried up through the layers above its own, is
    also read at each boundary k (its F, ∇F at h_k [T, d] and φ = ⟨∇F, diff_k⟩: what a row of layer k at the same
    point would give, for no row of its own) -> {k: (F, φ, gradient)}; needs `adapter.taps`."""
    xs = [(b + torch.as_tensor(a, dtype=b.dtype, device=b.device)[:, None, None] * diff).requires_grad_(True)
          for _, b, diff, a in groups]  # [k_g, T, d] each
    tap = {} if carried else None
    start, end = adapter.forward_stacked([(g[0], x) for g, x in zip(groups, xs)], tap)  # [Σ k_g, T] each
    f = _target(start, end, *span, target)                                               # [Σ k_g]
    boundaries = carried[2] if carried else []
    grads = torch.autograd.grad(f.sum(), [*xs, *(tap[k] for k, _ in boundaries)])  # rows are independent
    out, lo = [], 0
    for (_, _, diff, a), g in zip(groups, grads):
        out.append((f[lo:lo + len(a)].detach().double().cpu().numpy(), _path_derivative(g, diff), g))
        lo += len(a)
    extra = {}
    if carried:
        row = sum(len(a) for _, _, _, a in groups[:carried[0]]) + carried[1]  # its place in every tapped batch
        extra = {k: (float(f[row].detach()), float(_path_derivative(g[row:row + 1], diff)[0]), g[row])
                 for (k, diff), g in zip(boundaries, grads[len(xs):])}
    return out, extra


def _adaptive_layers_together(adapter: EncoderAdapter, indices: list[int], states, baselines, span,
                              settings: IGSettings) -> list[tuple[torch.Tensor, float, AdaptiveMesh]]:
    """`_adaptive_layer` for every layer at once: each round packs every layer's pending rows into full chunks of
    one stacked forward/backward, instead of one short batch per layer and round (item 3 of issue 12).
    Every layer's path ends at α = 1 at its own h_ℓ, the example's own hidden state: where the stack can tap its
    boundaries, the lowest layer's α = 1 row, carried up, gives every higher layer's α = 1 node (F and ∇F at h_ℓ)
    in the same pass, so those layers evaluate no row of their own there (the rows above it cost L − ℓ layers)."""
    T = states[0].shape[0]
    rows = max(1, settings.max_batch_tokens // T)
    diffs = [states[i] - b for i, b in zip(indices, baselines)]  # [T, d] each
    meshes = [AdaptiveMesh(settings.tolerance, settings.max_steps, settings.panel_points, settings.breakpoints,
                           settings.criterion, settings.split, settings.refine_fraction) for _ in indices]
    grads: list[list[torch.Tensor]] = [[] for _ in indices]
    order = sorted(range(len(indices)), key=lambda r: indices[r])  # stacked passes take layers bottom-up
    while True:
        pending = {r: meshes[r].pending() for r in order if not meshes[r].done}
        if not pending:
            break
        at_one = [r for r in pending if 1.0 in pending[r]] if adapter.taps else []
        source, riders = (at_one[0], at_one[1:]) if len(at_one) > 1 else (None, [])
        items = [(r, i) for r in pending for i, a in enumerate(pending[r]) if not (r in riders and a == 1.0)]
        got: dict[int, dict[int, tuple]] = {r: {} for r in pending}  # r -> {pending position: (F, φ, gradient)}
        n_chunks = -(-len(items) // rows)
        bounds = np.linspace(0, len(items), n_chunks + 1).round().astype(int)  # equal chunks
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            chunk = items[lo:hi]
            members = list(dict.fromkeys(r for r, _ in chunk))
            positions = {r: [i for q, i in chunk if q == r] for r in members}
            groups = [(indices[r], baselines[r], diffs[r], pending[r][positions[r]]) for r in members]
            carried = None
            if source in members and 1.0 in groups[members.index(source)][3]:
                g = members.index(source)
                carried = (g, list(groups[g][3]).index(1.0), [(indices[r], diffs[r]) for r in riders])
            results, extra = _stacked_gradient_rows(adapter, groups, span, settings.target, carried)
            for r, (F, phi, g) in zip(members, results):
                for n, i in enumerate(positions[r]):
                    got[r][i] = (F[n], phi[n], g[n])
            for r in riders if carried else []:
                got[r][list(pending[r]).index(1.0)] = extra[indices[r]]
        for r, parts in got.items():
            parts = [parts[i] for i in range(len(pending[r]))]  # pending order
            grads[r].append(torch.stack([g for _, _, g in parts]))
            meshes[r].record(np.array([F for F, _, _ in parts]), np.array([p for _, p, _ in parts]))
    out = []
    for r in range(len(indices)):
        weights = torch.as_tensor(meshes[r].node_weights(), dtype=diffs[r].dtype, device=diffs[r].device)  # [N]
        path_grad = torch.einsum("n,ntd->td", weights, torch.cat(grads[r]))  # [T, d]
        out.append((diffs[r] * path_grad, meshes[r].F[meshes[r].alphas.index(0.0)], meshes[r]))
    return out


def _warm_breakpoints(mesh: AdaptiveMesh, settings: IGSettings) -> np.ndarray:
    """The panel ends a layer ended with, thinned (every other one dropped) until the mesh fits the cap."""
    ends = np.array(sorted({mesh.alphas[p.left] for p in mesh.panels} | {1.0}))
    while len(ends) > 2 and (len(ends) - 1) * (settings.panel_points - 1) + 1 > settings.max_steps:
        ends = np.unique(np.r_[ends[::2], 1.0])
    return ends


def _baseline(baseline: Baseline, index: int, h: torch.Tensor) -> torch.Tensor:
    """b for layer `index` [T, d]: zeros, a tensor broadcast to h's shape, or baseline(index, h)."""
    if baseline is None:
        return torch.zeros_like(h)
    return baseline(index, h) if callable(baseline) else torch.as_tensor(baseline, dtype=h.dtype).expand_as(h)


def _gap(ig_sum: float, f_h: float, f_b: float) -> float:
    expected = f_h - f_b
    return abs(ig_sum - expected) / max(abs(expected), 1e-12)


@torch.no_grad()
def _prefix(adapter: EncoderAdapter, input_ids, token_type_ids):
    states = adapter.hidden_states(input_ids[None], None, None if token_type_ids is None else token_type_ids[None])
    start, end = adapter.forward_from(adapter.num_layers, states[-1])
    return [s[0] for s in states], start[0], end[0]  # [T, d] per layer; [T], [T]


def integrated_gradients(model: nn.Module | EncoderAdapter, input_ids: torch.Tensor,
                         attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
                         *, layers: str | list[int] = "all", passage=None, span: tuple[int, int] | None = None,
                         baseline: Baseline = None, settings: IGSettings = IGSettings(),
                         keep_hidden: bool = False) -> IGResult:
    """Layer-wise IG for one example. input_ids, attention_mask, token_type_ids: [T] (padding is dropped).

    passage: bool mask [T] or (start, end) half-open token indices of the passage (default: token type 1
    without the final [SEP]); span: (start, end) inclusive to explain instead of the model's best span;
    baseline: a tensor broadcastable to [T, d], or a function (layer, h_ℓ) -> b; default zeros.
    """
    # Lightning's prediction loop runs under inference_mode, where no gradient can be taken: leave it here,
    # and copy the inputs, since inference tensors cannot take part in autograd.
    with torch.inference_mode(False):
        copy = lambda t: None if t is None else t.clone()
        return _integrated_gradients(model, copy(input_ids), copy(attention_mask), copy(token_type_ids), layers,
                                     passage, span, baseline, settings, keep_hidden)


def _integrated_gradients(model, input_ids, attention_mask, token_type_ids, layers, passage, span, baseline,
                          settings, keep_hidden) -> IGResult:
    adapter = model if isinstance(model, EncoderAdapter) else EncoderAdapter(model)
    if attention_mask is not None and not bool(attention_mask.all()):
        keep = attention_mask.bool()  # the IG of one example needs no padding: drop it
        input_ids = input_ids[keep]
        token_type_ids = None if token_type_ids is None else token_type_ids[keep]
        passage = passage[keep] if isinstance(passage, torch.Tensor) else passage
    T = int(input_ids.shape[0])
    indices = parse_layers(layers, adapter.num_layers) if isinstance(layers, str) else list(layers)
    for index in indices:
        adapter.check_index(index)

    # 1-2. prefix cache, the explained span and F(h)
    states, start_logits, end_logits = _prefix(adapter, input_ids, token_type_ids)
    if span is None:
        span = best_span(start_logits, end_logits, _passage_mask(passage, token_type_ids, T),
                         settings.max_answer_length)
    elif not (0 <= span[0] <= span[1] < T):
        raise UserError(f"span {span} is not inside the {T} tokens of this example")
    s, e = span
    f_h = float(_target(start_logits[None], end_logits[None], s, e, settings.target))

    # 3-4. per layer
    n = len(indices)
    importance, signed = np.zeros((n, T), np.float32), np.zeros((n, T), np.float32)
    delta, f_b, ig_sums = np.zeros(n), np.zeros(n), np.zeros(n)
    steps = np.zeros(n, np.int32)
    rules: list = [None] * n
    if settings.tolerance is None:
        alphas, weights = integration_rule(settings.method, settings.steps)
        schedule = lambda start: iter([RefinementLevel(alphas, weights, np.zeros(len(alphas), int), np.ones(1),
                                                       len(alphas), len(alphas))])
    else:
        schedule = lambda start: refinement_schedule(settings.refine_method, start, settings.max_steps)
    # With a tolerance the layers run top-down and each starts its schedule at the number of points the layer
    # above ended with (lower layers need at least as many, as measured): no wasted coarse levels below.
    start = settings.min_steps
    order = range(n) if settings.tolerance is None else sorted(range(n), key=lambda r: -indices[r])
    breakpoints = None  # adaptive: the panel ends the layer above ended with (warm start)
    together = settings.tolerance is not None and settings.refine_method == "adaptive" and not settings.warm_start

    def keep_adaptive(row: int, ig: torch.Tensor, mesh) -> None:
        """Row `row`'s results from an adaptive mesh (f_b[row] already set): sums, δ, steps, rule, [T] vectors."""
        ig_sums[row] = float(ig.double().sum())
        delta[row] = _gap(ig_sums[row], f_h, f_b[row])
        steps[row] = mesh.evaluations
        rules[row] = (np.array(mesh.alphas), mesh.node_weights())
        importance[row] = ig.norm(dim=-1).cpu().numpy()
        signed[row] = ig.sum(dim=-1).cpu().numpy()

    if together:  # independent layers: every round packs all layers' rows into full stacked chunks
        bases = [_baseline(baseline, index, states[index]) for index in indices]
        for row, (ig, f_b[row], mesh) in enumerate(_adaptive_layers_together(adapter, indices, states, bases, span,
                                                                              settings)):
            keep_adaptive(row, ig, mesh)
        order = []
    for row in order:
        index = indices[row]
        h = states[index]  # [T, d]
        b = _baseline(baseline, index, h)
        if settings.tolerance is not None and settings.refine_method == "adaptive":
            ig, f_b[row], mesh = _adaptive_layer(adapter, index, h, b, span, settings, breakpoints)
            if settings.warm_start:
                breakpoints = _warm_breakpoints(mesh, settings)
            keep_adaptive(row, ig, mesh)
            continue
        layer_ig = _LayerIG(adapter, index, h, b, span, settings)
        for level in schedule(start):
            layer_ig.add(level)
            f_b[row] = layer_ig.baseline_value
            ig = layer_ig.attribution(level.coeffs)  # [T, d]
            ig_sums[row] = float(ig.double().sum())
            delta[row] = _gap(ig_sums[row], f_h, f_b[row])
            steps[row] = level.steps
            if settings.tolerance is not None and delta[row] <= settings.tolerance:
                break
        start = min(settings.max_steps, max(settings.min_steps, level.points))
        importance[row] = ig.norm(dim=-1).cpu().numpy()
        signed[row] = ig.sum(dim=-1).cpu().numpy()

    start_prob = float(start_logits.softmax(-1)[s])
    end_prob = float(end_logits.softmax(-1)[e])
    hidden = [states[i].cpu().numpy().copy() for i in indices] if keep_hidden else None
    adaptive = settings.tolerance is not None and settings.refine_method == "adaptive"
    converged = None if settings.tolerance is None else delta <= settings.tolerance
    return IGResult(indices, importance, signed, delta, steps, s, e, start_prob, end_prob, f_h, f_b, ig_sums,
                    hidden, converged, rules if adaptive else None)
