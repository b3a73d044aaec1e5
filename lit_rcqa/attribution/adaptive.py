"""Adaptive integration of the IG path integral: composite Gauss–Lobatto panels, refined only where they are wrong.

Along the path x(α) = b + α (h − b) the scalar F(α) = F(x(α)) has the derivative φ(α) = ⟨∇F(x(α)), h − b⟩, and
every gradient row gives both: φ(α_k) is its gradient's dot product with h − b, F(α_k) its forward value. Over a
panel [a, c] whose ends are nodes, the exact integral of φ is F(c) − F(a), so each panel's quadrature error on φ,
    e_p = Σ_{k ∈ p} W_k φ(α_k) − (F(c) − F(a)),
is *known*, not estimated; and Σ_p e_p = Σ IG − (F(1) − F(0)), the completeness gap itself. Steps:
  1. an initial mesh (one panel [0, 1] by default) with an n-point Gauss–Lobatto rule per panel: the panel ends
     are nodes (shared by neighbouring panels) so every panel's F(c) − F(a) comes free with its rows;
  2. evaluate the pending nodes (the caller: one batch of gradient rows), record F and φ;
  3. if Σ_p |e_p| ≤ tol · |F(1) − F(0)| stop ("panels", the default: the gap cannot hide behind errors of opposite
     sign in two panels), or |Σ_p e_p| ≤ tol · |F(1) − F(0)| ("total": the completeness gap δ ≤ tol alone);
  4. otherwise split the worst panels, just enough of them that the others' errors fit the target (at most
     `fraction` of it), each at its own interior nodes: those become the ends of n − 1 smaller panels and only
     those panels' interior nodes are new, so no evaluation is ever thrown away; back to 2 (until the cap on
     evaluations; at the cap the mesh goes back to the best one evaluated, see `_refine`). With split="lazy" the
     n − 1 smaller panels start *bare*: the trapezoid on their two ends, whose error is known exactly as well, for
     no evaluation at all; the worst panels are chosen again among them, and only the bare panels that still fail
     get their n − 2 interior Lobatto nodes. Away from a sharp feature the bare panels pass as they are, so a
     round costs n − 2 evaluations per feature instead of (n − 1)(n − 2).
The final weights `node_weights()` give IG = (h − b) ⊙ Σ_k W_k ∇F(x(α_k)) over every node ever evaluated.

`AdaptiveMesh` is pure numpy bookkeeping: it never sees a tensor, so the same code integrates a 1-D function in
the tests and drives the gradient rows of a layer in `integrated_gradients`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lit_rcqa.errors import UserError

CRITERIA = ("panels", "total")
SPLITS = ("lazy", "nodes", "halves")


def check_panels(points: int, breakpoints, name: str = "") -> np.ndarray:
    """The one check of a panel rule's points and initial panel ends (AdaptiveMesh and IGSettings) -> the ends.
    name: how the caller's user calls the points (e.g. "panel_points "), for the message."""
    if int(points) != points or points < 3:
        raise UserError(f"a Gauss–Lobatto panel needs at least 3 points, got {name}{points}")
    ends = np.array([0.0, 1.0] if breakpoints is None else breakpoints, dtype=np.float64).reshape(-1)
    if len(ends) < 2 or ends[0] != 0.0 or ends[-1] != 1.0 or (np.diff(ends) <= 0).any():
        raise UserError(f"initial breakpoints must increase from 0 to 1, got {list(ends)}")
    return ends


def gauss_lobatto(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(nodes [n], weights [n]) of the n-point Gauss–Lobatto rule on [0, 1], ends included; exact to degree 2n − 3."""
    check_panels(n, None)
    n = int(n)
    p = np.polynomial.legendre.Legendre.basis(n - 1)
    inner = np.sort(p.deriv().roots().real)  # on [-1, 1]
    x = np.concatenate([[-1.0], inner, [1.0]])
    w = 2.0 / (n * (n - 1) * p(x) ** 2)
    return 0.5 * (x + 1.0), 0.5 * w


_TRAPEZOID = np.array([0.5, 0.5])


@dataclass
class _Panel:
    left: int            # node index of the left end
    right: int           # node index of the right end
    interior: list[int]  # node indices of the interior Lobatto nodes, left to right; none: a bare panel, the
                         # trapezoid on its ends (split="lazy")


class AdaptiveMesh:
    """Panels on [0, 1] over evaluated nodes; `pending()` says which α to evaluate next (see the module docstring).

    tolerance:   target on the (panel-summed) relative error of ∫φ, i.e. on the completeness gap δ
    max_nodes:   cap on evaluations (nodes) for this integral
    points:      Gauss–Lobatto points per panel (ends included)
    breakpoints: the initial panel ends, 0 … 1 (default one panel)
    criterion:   "panels" (Σ|e_p|) or "total" (|Σ e_p| = the completeness gap)
    split:       "lazy", "nodes" or "halves" (step 4)
    fraction:    the share of the error budget the panels left alone may hold after a round's splits
    """

    def __init__(self, tolerance: float, max_nodes: int = 129, points: int = 5,
                 breakpoints: np.ndarray | list[float] | None = None, criterion: str = "panels",
                 split: str = "nodes", fraction: float = 0.5):
        if criterion not in CRITERIA:
            raise UserError(f"unknown convergence criterion {criterion!r}; choose one of {', '.join(CRITERIA)}")
        if not tolerance > 0:
            raise UserError(f"the accuracy target must be > 0, got {tolerance}")
        if split not in SPLITS or (split == "halves" and points % 2 == 0):
            raise UserError(f"split must be 'lazy', 'nodes' or, with an odd number of points, 'halves'; got {split!r}")
        if not 0.0 <= fraction < 1.0:
            raise UserError(f"the refinement fraction must be in [0, 1), got {fraction}")
        self.tolerance, self.max_nodes, self.criterion, self.split = float(tolerance), int(max_nodes), criterion, split
        self.fraction = float(fraction)
        self.nodes, self.weights = gauss_lobatto(points)
        self.alphas: list[float] = []          # every node ever scheduled, in evaluation order
        self.F: list[float] = []               # F(α) per evaluated node (float('nan') while pending)
        self.phi: list[float] = []             # φ(α) per evaluated node
        self.panels: list[_Panel] = []
        self._pending: list[int] = []
        self._best: tuple[float, list[_Panel]] | None = None  # (error, panels) of the best fully evaluated mesh
        ends = check_panels(points, breakpoints)
        if len(ends) - 1 + (len(ends) - 1) * (points - 2) + 1 > self.max_nodes:
            raise UserError(f"the initial mesh needs more than the cap of {self.max_nodes} evaluations")
        end_ids = [self._add(a) for a in ends]
        for left, right in zip(end_ids[:-1], end_ids[1:]):
            self.panels.append(self._panel(left, right))

    # --- the caller's loop --------------------------------------------------------------------------------
    def pending(self) -> np.ndarray:
        """α of the nodes to evaluate next [k] (empty when done)."""
        return np.array([self.alphas[i] for i in self._pending], dtype=np.float64)

    def record(self, F: np.ndarray, phi: np.ndarray) -> None:
        """F(α) and φ(α) of the pending nodes, in `pending()` order; then decide what to evaluate next."""
        F, phi = np.asarray(F, np.float64).reshape(-1), np.asarray(phi, np.float64).reshape(-1)
        if len(F) != len(self._pending) or len(phi) != len(self._pending):
            raise ValueError(f"expected {len(self._pending)} values, got {len(F)} and {len(phi)}")
        for i, f, p in zip(self._pending, F, phi):
            self.F[i], self.phi[i] = float(f), float(p)
        self._pending = []
        self._refine()

    @property
    def evaluations(self) -> int:
        return len(self.alphas)

    @property
    def done(self) -> bool:
        return not self._pending

    # --- results ------------------------------------------------------------------------------------------
    def node_weights(self) -> np.ndarray:
        """W [evaluations]: ∫_0^1 g ≈ Σ_k W_k g(α_k) on the current panels (nodes no longer used weigh 0)."""
        W = np.zeros(len(self.alphas))
        for p in self.panels:
            ids, weights = self._rule(p)
            W[ids] += weights * (self.alphas[p.right] - self.alphas[p.left])
        return W

    def panel_errors(self) -> np.ndarray:
        """e_p per panel [n_panels]: quadrature of φ minus the exact F(c) − F(a)."""
        phi, F = np.asarray(self.phi), np.asarray(self.F)
        errors = np.empty(len(self.panels))
        for j, p in enumerate(self.panels):
            ids, weights = self._rule(p)
            width = self.alphas[p.right] - self.alphas[p.left]
            errors[j] = width * float(weights @ phi[ids]) - (F[p.right] - F[p.left])
        return errors

    def variation(self) -> float:
        """F(1) − F(0), the exact integral of φ."""
        return self.F[self._index(1.0)] - self.F[self._index(0.0)]

    def gap(self) -> float:
        """The completeness gap δ = |Σ W φ − (F(1) − F(0))| / |F(1) − F(0)| of the current weights."""
        expected = self.variation()
        return abs(float(np.asarray(self.phi) @ self.node_weights()) - expected) / max(abs(expected), 1e-12)

    def error(self) -> float:
        """The quantity held to the tolerance: Σ_p |e_p| ("panels") or |Σ_p e_p| ("total"), relative to |ΔF|."""
        return self._held(self.panel_errors()) / max(abs(self.variation()), 1e-12)

    @property
    def converged(self) -> bool:
        return self.error() <= self.tolerance

    # --- internals ----------------------------------------------------------------------------------------
    def _held(self, e: np.ndarray) -> float:
        """Σ_p |e_p| ("panels") or |Σ_p e_p| ("total") of the panel errors e, absolute."""
        return float(np.abs(e).sum() if self.criterion == "panels" else abs(e.sum()))

    def _add(self, alpha: float) -> int:
        self.alphas.append(float(alpha))
        self.F.append(float("nan"))
        self.phi.append(float("nan"))
        self._pending.append(len(self.alphas) - 1)
        return len(self.alphas) - 1

    def _index(self, alpha: float) -> int:
        return self.alphas.index(alpha)

    def _rule(self, p: _Panel) -> tuple[list[int], np.ndarray]:
        """A panel's nodes and weights on [0, 1]: Gauss–Lobatto, or the trapezoid on its ends (a bare panel)."""
        return [p.left, *p.interior, p.right], self.weights if p.interior else _TRAPEZOID

    def _panel(self, left: int, right: int) -> _Panel:
        a, c = self.alphas[left], self.alphas[right]
        return _Panel(left, right, [self._add(a + t * (c - a)) for t in self.nodes[1:-1]])

    def _refine(self) -> None:
        """Split the worst panels, just enough that the rest meet the target; nothing if done or capped."""
        budget = self.tolerance * abs(self.variation())
        n = len(self.nodes)
        e = self.panel_errors()
        if self._best is None or self._held(e) < self._best[0]:  # every node is evaluated here: the best mesh
            self._best = (self._held(e), list(self.panels))     # seen, for the cap
        while True:
            if self._held(e) <= budget:
                return
            chosen = self._worst(np.abs(e), budget)
            if self.split != "lazy" or not any(self.panels[j].interior for j in chosen):
                break
            # lazy: a failing Lobatto panel becomes, for free, the bare panels between its nodes (each one's error
            # is known exactly too); then choose again, so that only the bare panels that still fail cost nodes
            self.panels = [q for j, p in enumerate(self.panels)
                           for q in (self._bare(p) if j in chosen and p.interior else [p])]
            e = self.panel_errors()
        per_split = {"lazy": n - 2, "nodes": (n - 1) * (n - 2), "halves": 2 * (n - 2)}[self.split]  # new nodes
        chosen = chosen[:(self.max_nodes - len(self.alphas)) // per_split]
        if not chosen:  # at the cap: the best mesh evaluated, not bare pieces that can get no nodes
            self.panels = list(self._best[1])
            return
        panels = []
        for j, p in enumerate(self.panels):
            if j not in chosen:
                panels.append(p)
            elif not p.interior:  # lazy: a bare panel gets its Lobatto nodes
                panels.append(self._panel(p.left, p.right))
            else:
                ends = [p.left, *p.interior, p.right]
                if self.split == "halves":  # the midpoint is a node; the other interior nodes are dropped
                    ends = [p.left, p.interior[(n - 3) // 2], p.right]
                panels.extend(self._panel(a, c) for a, c in zip(ends[:-1], ends[1:]))
        self.panels = panels

    def _worst(self, e: np.ndarray, budget: float) -> list[int]:
        """The worst panels, worst first, until the panels left alone hold at most `fraction` of the budget."""
        remaining, chosen = e.sum(), []
        for j in np.argsort(-e):
            if remaining <= self.fraction * budget:
                break
            chosen.append(int(j))
            remaining -= e[j]
        return chosen

    @staticmethod
    def _bare(p: _Panel) -> list[_Panel]:
        ends = [p.left, *p.interior, p.right]
        return [_Panel(a, c, []) for a, c in zip(ends[:-1], ends[1:])]
