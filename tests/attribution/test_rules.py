"""Integration rules: normalisation, polynomial exactness, the seed preset, Captum's definitions, nesting, the registry."""

from __future__ import annotations

import numpy as np
import pytest

from lit_rcqa.attribution import rules
from lit_rcqa.attribution.integrated_gradients import IGSettings, integrated_gradients
from lit_rcqa.attribution.rules import RULES, integration_rule, refinement_schedule, romberg_coeffs
from lit_rcqa.errors import UserError
from tests.attribution.test_integrated_gradients import tiny_example, with_random_biases
from tests.conftest import make_tiny_qa_model


def integrate(name, steps, f):
    alphas, weights = integration_rule(name, steps)
    return float(np.sum(weights * f(alphas)))


def monomial_integral(p):
    return 1.0 / (p + 1)


@pytest.mark.parametrize("name", [r for r in RULES if r != "riemann_trapezoid"])
@pytest.mark.parametrize("steps", [2, 3, 10, 50])
def test_weights_sum_to_one_and_points_in_unit_interval(name, steps):
    alphas, weights = integration_rule(name, steps)
    assert alphas.shape == weights.shape
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert (alphas >= 0).all() and (alphas <= 1).all() and (weights > 0).all()


@pytest.mark.parametrize("steps", [2, 10, 50])
def test_captum_trapezoid_weights_sum_to_one_minus_one_over_m(steps):
    # Captum's definition, kept for exact comparisons: m points spaced 1/(m-1), weights 1/m (ends halved)
    alphas, weights = integration_rule("riemann_trapezoid", steps)
    assert weights.sum() == pytest.approx(1 - 1 / steps, abs=1e-12)
    np.testing.assert_allclose(alphas, np.linspace(0, 1, steps))


@pytest.mark.parametrize("name, steps, degree", [
    ("gausslegendre", 2, 3), ("gausslegendre", 5, 9), ("gausslegendre", 8, 15),
    ("riemann_middle", 7, 1), ("trapezoid", 9, 1),
])
def test_exact_on_polynomials_up_to_the_rule_degree(name, steps, degree):
    for p in range(degree + 1):
        assert integrate(name, steps, lambda a: a ** p) == pytest.approx(monomial_integral(p), abs=1e-12)
    # ... and not beyond it
    assert integrate(name, steps, lambda a: a ** (degree + 1)) != pytest.approx(monomial_integral(degree + 1),
                                                                                  abs=1e-12)


@pytest.mark.parametrize("name", ["riemann_left", "riemann_right"])
def test_left_and_right_riemann_are_exact_on_constants_and_have_first_order_error(name):
    assert integrate(name, 10, lambda a: 3 + 0 * a) == pytest.approx(3.0)
    err10 = integrate(name, 10, lambda a: a) - 0.5
    err20 = integrate(name, 20, lambda a: a) - 0.5
    assert abs(err10) == pytest.approx(0.05) and err10 / err20 == pytest.approx(2.0)


def test_seed_preset_reproduces_averaged_consecutive_gradients():
    alphas, weights = integration_rule("seed", 50)  # the preset ignores steps: always the seed's 20 points
    np.testing.assert_allclose(alphas, np.arange(20) / 20)
    expected_weights = np.r_[1 / 38, np.full(18, 1 / 19), 1 / 38]
    np.testing.assert_allclose(weights, expected_weights, rtol=1e-14)
    # the seed's computation on arbitrary per-point gradients [20, d]
    grads = np.random.default_rng(0).normal(size=(20, 5))
    seed_average = ((grads[:-1] + grads[1:]) / 2).mean(axis=0)
    np.testing.assert_allclose(weights @ grads, seed_average, rtol=1e-12)


@pytest.mark.parametrize("name", ["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid",
                                  "gausslegendre"])
@pytest.mark.parametrize("steps", [2, 3, 7, 50])
def test_equal_to_captum_approximation_parameters(name, steps):
    from captum.attr._utils.approximation_methods import approximation_parameters

    step_sizes, alphas_fn = approximation_parameters(name)
    alphas, weights = integration_rule(name, steps)
    # Captum builds Riemann alphas with float32 torch.linspace, hence 1e-7
    np.testing.assert_allclose(alphas, alphas_fn(steps), atol=1e-7, rtol=0)
    np.testing.assert_allclose(weights, step_sizes(steps), atol=1e-15, rtol=1e-12)


def test_bad_names_and_steps_are_user_errors():
    with pytest.raises(UserError, match="unknown integration rule 'simpson'"):
        integration_rule("simpson", 10)
    with pytest.raises(UserError, match="steps >= 2"):
        integration_rule("riemann_left", 1)
    with pytest.raises(UserError, match="steps >= 2"):
        integration_rule("gausslegendre", 0)


def _run_schedule(name, f, start=3, cap=129):
    """Apply a schedule to f the way the IG code does: one weighted sum per generation. -> [(steps, estimate)]"""
    sums, seen, out = [], [], []
    for level in refinement_schedule(name, start, cap):
        seen.extend(level.new_alphas)
        for a, w, g in zip(level.new_alphas, level.new_weights, level.new_generations):
            while len(sums) <= g:
                sums.append(0.0)
            sums[g] += w * f(a)
        out.append((level.steps, sum(c * s for c, s in zip(level.coeffs, sums))))
        assert level.steps == len(seen) if name in ("romberg", "trapezoid") else True
    return out, seen


def test_nested_schedules_only_add_new_points():
    for name in ("romberg", "trapezoid"):
        estimates, seen = _run_schedule(name, np.exp)
        assert len(set(seen)) == len(seen)  # no point is evaluated twice
        assert [s for s, _ in estimates] == [3, 5, 9, 17, 33, 65, 129]


def test_trapezoid_schedule_equals_the_trapezoid_rule_and_romberg_is_exact_to_degree_2k_plus_1():
    estimates, _ = _run_schedule("trapezoid", np.cos)
    for steps, value in estimates:
        assert value == pytest.approx(integrate("trapezoid", steps, np.cos), abs=1e-14)
    for level in range(1, 5):  # 2^k + 1 points
        for p in range(2 * level + 2):
            estimates, _ = _run_schedule("romberg", lambda a: a ** p, start=2 ** level + 1, cap=2 ** level + 1)
            assert estimates[-1][1] == pytest.approx(monomial_integral(p), abs=1e-12)
    np.testing.assert_allclose(romberg_coeffs(1), [1 / 6, 4 / 6])  # Simpson: (f0 + f1)/6 + 4 f(1/2)/6


def test_romberg_converges_faster_than_trapezoid_and_gauss_legendre_schedule_doubles():
    romberg, _ = _run_schedule("romberg", np.exp)
    trapezoid, _ = _run_schedule("trapezoid", np.exp)
    assert abs(romberg[3][1] - (np.e - 1)) < 1e-10 < abs(trapezoid[3][1] - (np.e - 1))
    levels = list(refinement_schedule("gausslegendre", 5, 80))
    assert [len(lv.new_alphas) for lv in levels] == [5, 10, 20, 40]
    assert [lv.steps for lv in levels] == [5, 15, 35, 75]
    assert list(levels[-1].coeffs) == [0, 0, 0, 1]


# --- the registry: a rule registered from outside the module, its help and its one check ---------------------
@pytest.fixture
def toy_rules():
    @rules.register("toy_simpson", min_steps=3)
    def simpson(n):
        """composite Simpson on m (odd) equally spaced points"""
        if n % 2 == 0:
            n += 1  # Simpson needs an even number of intervals
        h = 1.0 / (n - 1)
        weights = np.where(np.arange(n) % 2 == 1, 4.0, 2.0) * h / 3
        weights[[0, -1]] = h / 3
        return np.linspace(0.0, 1.0, n), weights

    @rules.register("toy_midpoint")
    def midpoint(n):
        """the midpoint rule, written again"""
        return (2 * np.arange(n) + 1) / (2 * n), np.full(n, 1 / n)

    yield
    rules.unregister("toy_simpson")
    rules.unregister("toy_midpoint")


@pytest.fixture(scope="module")
def tiny():
    return with_random_biases(make_tiny_qa_model("bert", layers=2, hidden=32))


def test_a_registered_rule_runs_in_integrated_gradients(toy_rules, tiny):
    ids, types = tiny_example()
    midpoint = integrated_gradients(tiny, ids, token_type_ids=types, settings=IGSettings(steps=8, method="toy_midpoint"))
    reference = integrated_gradients(tiny, ids, token_type_ids=types,
                                     settings=IGSettings(steps=8, method="riemann_middle"))
    np.testing.assert_allclose(midpoint.importance, reference.importance, rtol=1e-5, atol=1e-8)
    simpson = integrated_gradients(tiny, ids, token_type_ids=types, settings=IGSettings(steps=65, method="toy_simpson"))
    assert (simpson.steps == 65).all() and (simpson.delta <= 1e-3).all()  # complete: Σ IG = F(h) − F(b)
    # with an accuracy target, a registered rule is also a doubling schedule
    doubled = integrated_gradients(tiny, ids, token_type_ids=types,
                                   settings=IGSettings(tolerance=1e-2, refine_method="toy_simpson", max_steps=129))
    assert (doubled.delta <= 1e-2).all()
    assert "toy_simpson: composite Simpson on m (odd) equally spaced points" in rules.help_text()


def test_one_check_names_the_choices_for_an_unknown_rule_or_bad_steps(toy_rules):
    for make in (lambda: IGSettings(method="simpson"), lambda: integration_rule("simpson", 10)):
        with pytest.raises(UserError, match=r"unknown integration rule 'simpson'; choose one of riemann_left, .*"
                                            r"trapezoid, toy_simpson, toy_midpoint$"):
            make()
    for make in (lambda: IGSettings(method="toy_simpson", steps=2), lambda: integration_rule("toy_simpson", 2)):
        with pytest.raises(UserError, match=r"^integration rule 'toy_simpson' needs steps >= 3, got 2$"):
            make()
    IGSettings(method="seed", steps=1)  # a preset ignores the steps
    with pytest.raises(ValueError, match="exists already"):
        rules.register("gausslegendre")(lambda n: (np.zeros(n), np.zeros(n)))
    with pytest.raises(ValueError, match="exists already"):
        rules.register("romberg")(lambda n: (np.zeros(n), np.zeros(n)))


def test_the_registry_holds_the_built_ins_only_after_unregistering():
    assert list(RULES) == ["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre",
                           "seed", "trapezoid"]
