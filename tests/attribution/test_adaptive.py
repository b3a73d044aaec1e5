"""Adaptive Gauss–Lobatto panels on 1-D integrands with known integrals: the target is met, and with fewer
evaluations than doubling Gauss–Legendre (the tolerance schedule before it); nothing evaluated is dropped."""

from __future__ import annotations

import numpy as np
import pytest

from lit_rcqa.attribution.adaptive import AdaptiveMesh, gauss_lobatto
from lit_rcqa.attribution.rules import refinement_schedule
from lit_rcqa.errors import UserError

K = 300.0  # steepness of the logistic step


def _logistic(a):
    return 1.0 / (1.0 + np.exp(-K * (a - 0.02)))


# name -> (integrand g = dG/dα, antiderivative G); the exact integral on [0, 1] is G(1) − G(0)
INTEGRANDS = {
    "sharp logistic step at 0.02": (lambda a: K * _logistic(a) * (1.0 - _logistic(a)), _logistic),
    "kink at 0.3": (lambda a: np.abs(a - 0.3) + 0.1, lambda a: np.sign(a - 0.3) * (a - 0.3) ** 2 / 2 + 0.1 * a),
    "smooth polynomial": (lambda a: 5 * a ** 4 - 3 * a ** 2 + 1, lambda a: a ** 5 - a ** 3 + a),
}


def integrate_adaptive(g, G, tolerance, **kwargs):
    """The IG driver's loop on a scalar: evaluate the pending nodes, record F = G and φ = g."""
    mesh = AdaptiveMesh(tolerance, **kwargs)
    while not mesh.done:
        alphas = mesh.pending()
        mesh.record(G(alphas), g(alphas))
    estimate = float(mesh.node_weights() @ g(np.array(mesh.alphas)))
    return estimate, mesh


def gauss_legendre_doubling(g, exact, tolerance, cap=5000):
    """Evaluations the doubling Gauss–Legendre schedule (5, 10, 20, ... points) spends to reach the tolerance."""
    for level in refinement_schedule("gausslegendre", 5, cap):
        estimate = float(level.new_weights @ g(level.new_alphas))
        if abs(estimate - exact) <= tolerance * abs(exact):
            return level.steps
    raise AssertionError("doubling Gauss-Legendre never met the tolerance")


@pytest.mark.parametrize("n", [3, 4, 5, 7])
def test_gauss_lobatto_includes_the_ends_and_is_exact_to_degree_2n_minus_3(n):
    nodes, weights = gauss_lobatto(n)
    assert nodes[0] == 0.0 and nodes[-1] == 1.0 and (np.diff(nodes) > 0).all() and (weights > 0).all()
    for p in range(2 * n - 2):
        assert weights @ nodes ** p == pytest.approx(1.0 / (p + 1), abs=1e-13)
    assert weights @ nodes ** (2 * n - 2) != pytest.approx(1.0 / (2 * n - 1), abs=1e-13)
    if n == 3:  # Simpson's rule
        np.testing.assert_allclose(weights, [1 / 6, 4 / 6, 1 / 6])


@pytest.mark.parametrize("name, tolerance", [
    ("sharp logistic step at 0.02", 1e-2), ("sharp logistic step at 0.02", 1e-3), ("kink at 0.3", 1e-3),
    ("smooth polynomial", 1e-2), ("smooth polynomial", 1e-3),
    # not the kink at 1e-2: a kink costs a 5-point rule only δ ≈ 1 %, so the first Gauss-Legendre level (5 points)
    # passes, while one Lobatto panel of 5 just misses and its split costs 12 more
])
def test_meets_the_tolerance_with_fewer_evaluations_than_doubling_gauss_legendre(name, tolerance):
    g, G = INTEGRANDS[name]
    exact = G(1.0) - G(0.0)
    estimate, mesh = integrate_adaptive(g, G, tolerance, max_nodes=1000)
    assert abs(estimate - exact) <= tolerance * abs(exact)
    assert mesh.converged and mesh.gap() == pytest.approx(abs(estimate - exact) / abs(exact), rel=1e-9, abs=1e-15)
    doubling = gauss_legendre_doubling(g, exact, tolerance)
    if name == "smooth polynomial":  # degree 4: both need one 5-point rule
        assert mesh.evaluations <= doubling
    else:
        assert mesh.evaluations < doubling, (mesh.evaluations, doubling)


def test_the_sharp_step_costs_doubling_gauss_legendre_several_times_more():
    g, G = INTEGRANDS["sharp logistic step at 0.02"]
    _, mesh = integrate_adaptive(g, G, 1e-2, max_nodes=1000)
    assert 3 * mesh.evaluations <= gauss_legendre_doubling(g, G(1.0) - G(0.0), 1e-2)


def test_no_evaluation_is_thrown_away_and_refinement_goes_where_the_integrand_is_sharp():
    g, G = INTEGRANDS["sharp logistic step at 0.02"]
    _, mesh = integrate_adaptive(g, G, 1e-3, max_nodes=1000)
    alphas = np.array(mesh.alphas)
    assert len(np.unique(alphas)) == len(alphas)  # every node evaluated once
    assert (mesh.node_weights() > 0).all()        # ... and every one weighs in the final rule
    assert mesh.node_weights().sum() == pytest.approx(1.0, abs=1e-12)
    assert (alphas < 0.1).sum() > (alphas > 0.5).sum()  # most nodes where the step is


def test_panel_errors_are_the_exact_errors_of_each_panel():
    g, G = INTEGRANDS["kink at 0.3"]
    _, mesh = integrate_adaptive(g, G, 1e-1, max_nodes=1000)
    phi = g(np.array(mesh.alphas))
    for error, panel in zip(mesh.panel_errors(), mesh.panels):
        a, c = mesh.alphas[panel.left], mesh.alphas[panel.right]
        nodes, weights = gauss_lobatto(5)
        brute = (c - a) * float(weights @ g(a + nodes * (c - a))) - (G(c) - G(a))
        assert error == pytest.approx(brute, abs=1e-14)
    assert mesh.panel_errors().sum() == pytest.approx(mesh.node_weights() @ phi - (G(1.0) - G(0.0)), abs=1e-14)


def test_the_panels_criterion_does_not_stop_on_errors_that_cancel():
    # φ = 1 + c·(α − ½)^4 (sign flipped on each half): the two halves' errors cancel in the total
    g = lambda a: 1.0 + np.sign(a - 0.5) * 40 * (a - 0.5) ** 4 * np.sin(20 * a)
    xs = np.linspace(0, 1, 200001)
    cumulative = np.concatenate([[0.0], np.cumsum((g(xs[1:]) + g(xs[:-1])) / 2 * np.diff(xs))])
    G = lambda a: np.interp(a, xs, cumulative)
    _, strict = integrate_adaptive(g, G, 1e-3, max_nodes=1000, breakpoints=[0, 0.5, 1])
    _, loose = integrate_adaptive(g, G, 1e-3, max_nodes=1000, breakpoints=[0, 0.5, 1], criterion="total")
    assert np.abs(strict.panel_errors()).sum() <= 1e-3 * abs(strict.variation())
    assert strict.evaluations >= loose.evaluations


def test_stops_at_the_cap_and_reports_the_gap_it_reached():
    g, G = INTEGRANDS["sharp logistic step at 0.02"]
    _, mesh = integrate_adaptive(g, G, 1e-6, max_nodes=30)
    assert mesh.evaluations <= 30 and not mesh.converged and mesh.gap() > 1e-6


@pytest.mark.parametrize("points", [3, 5])
@pytest.mark.parametrize("cap", range(17, 45))
def test_at_the_cap_a_lazy_mesh_keeps_its_panels_rather_than_the_bare_pieces_it_cannot_refine(points, cap):
    # a lazy round first turns failing panels into bare trapezoid pieces (free); at the cap, pieces that get no nodes
    # must not replace the better panel they came from: the final error is at most any earlier round's
    g, G = INTEGRANDS["sharp logistic step at 0.02"]
    mesh = AdaptiveMesh(1e-9, max_nodes=cap, points=points, breakpoints=[0, 0.25, 0.5, 0.75, 1], split="lazy")
    errors = []  # the error of every fully evaluated mesh the rounds went through
    while not mesh.done:
        alphas, evaluated = mesh.pending(), list(mesh.panels)
        mesh.record(G(alphas), g(alphas))
        final, mesh.panels = mesh.panels, evaluated
        errors.append(mesh.error())
        mesh.panels = final
    assert mesh.evaluations <= cap and not mesh.converged
    assert mesh.error() <= min(errors) * (1 + 1e-12)


def test_bad_settings_are_user_errors():
    with pytest.raises(UserError, match="at least 3 points"):
        AdaptiveMesh(0.01, points=2)
    with pytest.raises(UserError, match="criterion"):
        AdaptiveMesh(0.01, criterion="mean")
    with pytest.raises(UserError, match="> 0"):
        AdaptiveMesh(0.0)
    with pytest.raises(UserError, match="breakpoints"):
        AdaptiveMesh(0.01, breakpoints=[0, 0.6, 0.5, 1])
    with pytest.raises(UserError, match="cap"):
        AdaptiveMesh(0.01, max_nodes=4)
    with pytest.raises(UserError, match="split"):
        AdaptiveMesh(0.01, split="thirds")
    with pytest.raises(UserError, match="fraction"):
        AdaptiveMesh(0.01, fraction=1.0)


@pytest.mark.parametrize("name", list(INTEGRANDS))
@pytest.mark.parametrize("points", [4, 5])
def test_lazy_splits_meet_the_tolerance_with_no_more_evaluations_than_splitting_every_sub_panel(name, points):
    g, G = INTEGRANDS[name]
    exact = G(1.0) - G(0.0)
    runs = {split: integrate_adaptive(g, G, 1e-3, max_nodes=1000, points=points, breakpoints=[0, 0.5, 1],
                                      split=split) for split in ("lazy", "nodes")}
    for estimate, mesh in runs.values():
        assert abs(estimate - exact) <= 1e-3 * abs(exact) and mesh.converged
    assert runs["lazy"][1].evaluations <= runs["nodes"][1].evaluations
    if name == "sharp logistic step at 0.02":  # the sub-panels away from the step need no nodes of their own
        assert runs["lazy"][1].evaluations < runs["nodes"][1].evaluations
    lazy = runs["lazy"][1]
    assert len(np.unique(lazy.alphas)) == len(lazy.alphas) and (lazy.node_weights() > 0).all()


def test_a_bare_panel_is_the_trapezoid_on_its_ends_and_its_error_is_exact():
    g, G = INTEGRANDS["sharp logistic step at 0.02"]
    _, mesh = integrate_adaptive(g, G, 1e-3, max_nodes=1000, split="lazy")
    bare = [p for p in mesh.panels if not p.interior]
    assert bare and len(bare) < len(mesh.panels)  # both kinds in the final mesh
    for error, panel in zip(mesh.panel_errors(), mesh.panels):
        a, c = mesh.alphas[panel.left], mesh.alphas[panel.right]
        if panel.interior:
            nodes, weights = gauss_lobatto(5)
            quadrature = (c - a) * float(weights @ g(a + nodes * (c - a)))
        else:
            quadrature = (c - a) * (g(a) + g(c)) / 2
        assert error == pytest.approx(quadrature - (G(c) - G(a)), abs=1e-14)
    phi = g(np.array(mesh.alphas))
    assert mesh.panel_errors().sum() == pytest.approx(mesh.node_weights() @ phi - (G(1.0) - G(0.0)), abs=1e-14)


def test_a_larger_refinement_fraction_splits_fewer_panels_per_round():
    g, G = INTEGRANDS["sharp logistic step at 0.02"]
    rounds = {}
    for fraction in (0.0, 0.9):
        mesh = AdaptiveMesh(1e-3, max_nodes=1000, split="lazy", fraction=fraction)
        sizes = []
        while not mesh.done:
            sizes.append(len(mesh.pending()))
            alphas = mesh.pending()
            mesh.record(G(alphas), g(alphas))
        rounds[fraction] = sizes
        assert mesh.converged
    assert max(rounds[0.9][1:]) <= max(rounds[0.0][1:])
    assert len(rounds[0.9]) >= len(rounds[0.0])
