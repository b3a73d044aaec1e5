"""Integration rules for Integrated Gradients: where to evaluate the gradient on [0, 1] and how to weigh it.

A rule is a pure function `steps -> (alphas [m], weights [m])` so that
    ∫_0^1 g(α) dα  ≈  Σ_k weights[k] · g(alphas[k]),
registered under its name in `RULES` ({name: Rule}) with `@register(name)`; `integration_rule(name, steps)` looks
it up. The CLI's choices and help, and the one check of a name and a step count (`check`), read the registry, so a
new rule is one decorated function.
For the names Captum shares ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid",
"gausslegendre") the alphas and weights are Captum's (captum/attr/_utils/approximation_methods.py), so an
equal-settings comparison with `LayerIntegratedGradients(method=name, n_steps=steps)` is exact.
Beware Captum's "riemann_trapezoid": m equally spaced points on [0, 1] (spacing 1/(m−1)) but weights 1/m
(halved at both ends), so its weights sum to 1 − 1/m and every estimate is biased by −1/m (2 % at m = 50).
"trapezoid" is the textbook rule on the same points (weights 1/(m−1), halved at the ends; they sum to 1).

"seed" reproduces the original seed code: gradients at the 20 points α_i = i/20, i = 0..19 (α = 1 is never
reached), consecutive gradients averaged, a_i = (g_i + g_{i+1}) / 2 for i = 0..18, then the mean of the 19
a_i is the path-averaged gradient. Expanding the mean:
    mean(a) = (1/19) · [g_0/2 + g_1 + ... + g_18 + g_19/2]
so the weights are 1/38 at both ends and 1/19 inside (they sum to 1): the trapezoid rule on [0, 19/20],
rescaled to unit length — i.e. the last interval [19/20, 1] is missing and the integral is a (biased)
average over [0, 0.95]. The preset ignores `steps` (the seed always uses 20 points).

Nested refinement (the accuracy target): `refinement_schedule(name, ...)` yields levels whose points extend
the previous level's, with per-level combination coefficients, so a caller only evaluates the *new* points
and keeps one gradient sum per generation of points ([n_generations, T, d], tiny). Two families:
  - "romberg": trapezoid on 2^k intervals (generation 0 = the endpoints {0, 1}, generation g = the odd
    multiples of 2^-g) with Richardson extrapolation — Romberg integration. Within a generation every point
    has the same weight at every level, which is what makes the per-generation sums sufficient. Level k uses
    2^k + 1 points and is exact for polynomials of degree 2k + 1.
  - "trapezoid": the same nested points without extrapolation (level k = riemann_trapezoid with 2^k + 1 points).
  - any other registered rule (RULES): not nested; level k evaluates a fresh rule with `start · 2^k` steps, re-evaluating
    every point (at most 2x the work of knowing the final m in advance).
Measured on the embedded MiniLM (seeded QA head, real SQuAD inputs), the IG integrand is not smooth enough for
the nested family to pay off: at a 1 % target Romberg needed 129-257 points on layers 0-5, where Gauss-Legendre
at m = 50 already gives a median gap of 2e-5 on layers 3-6; tanh-sinh and sin²/quintic-transformed trapezoid
rules (nested too) were no better than Gauss-Legendre at equal points. Hence Gauss-Legendre doubling is the
default schedule of the accuracy target, and the nested rules remain available.

Adaptive panels (issue 12; `adaptive.py`, the accuracy target's default since): Gauss–Legendre doubling throws every
failed level's evaluations away and overshoots, and the embedding layer's integrand has sharp features near α = 0
that a global rule resolves only with many points everywhere. Composite Gauss–Lobatto panels know each panel's exact
error on φ (F at the panel ends comes with the rows), are refined where that error is, and are split at their own
nodes (nothing thrown away). Measured on 2 shared CPU cores; cost = gradient evaluations weighted by the share of
the model each layer's rows run through, (L − ℓ)/L, per question; δ in %, max over questions and layers; L2 = the
relative L2 error of the importance vector against Gauss–Legendre m = 128, max over questions and layers:

  MiniLM, seeded (untrained) QA head, 3 SQuAD dev questions of 100-130 tokens     cost   max δ    max L2
    uniform Gauss–Legendre m = 24 (layer 0 median δ 63 %)                            87   68 %     15 %
    uniform Gauss–Legendre m = 32 (layer 0 median δ 42 %)                           117   60 %     10 %
    Gauss–Legendre doubling to δ ≤ 1 % (the previous accuracy target, warm start)   480   0.66 %   0.58 %
    adaptive Lobatto-3 (Simpson), one initial panel, to 1 %                         131   0.54 %   30 % (*)
    adaptive Lobatto-4, one initial panel                                           149   0.56 %   0.72 %
    adaptive Lobatto-5, one initial panel                                           185   0.86 %   0.77 %
      ... with a warm start from the layer above / criterion |Σ e_p| ("total")   216 / 183   same
  MiniLM after 1 epoch on the synthetic set, 4 SQuAD dev questions of 100-130 tokens
    uniform Gauss–Legendre m = 24 (layer 0 median δ 31 %, layer 1 12 %)              87   62 %     15 %
    adaptive Lobatto-4, two initial panels [0, ½, 1]                                114   0.98 %   15 % (*)
    adaptive Lobatto-5, two initial panels [0, ½, 1]  (the default then)            156   0.79 %   1.9 %
  MiniLM, the default run (synthetic set, 2 epochs), its first 5 dev questions; seconds on a quiet machine,
  all layers packed per round; every adaptive variant has all δ ≤ 1 %, fixed m = 50 has max δ 31 % at layer 0
    fixed Gauss–Legendre m = 50 (the old analyze.py default)               46 s   175
    adaptive Lobatto-5, two panels, split at nodes, Σ|e_p| (default then) 40 s   156
      ... split in halves (2 interior nodes dropped per split)             37 s   148
      ... criterion |Σ e_p|                                                38 s   149
      ... both                                                             34 s   135
    adaptive Lobatto-4, two panels                                         33 s   125   (but see (*))
  MiniLM, the default run, its first 6 dev questions: graded initial panels (the default's two panels vs more
  panels near α = 0, where the embeddings' integrand was thought to be sharp); gradient evaluations per layer
  (mean, embeddings … layer 6), cost as above (×7 layers), max δ over questions and layers; 2026-12-01
    [0, ½, 1] (the default then)     51 61 53 29 29 27  9    cost 1047   0.74 %
    [0, 0.1, ½, 1]                   57 61 51 33 29 23 13         1084   0.93 %
    [0, 0.05, 0.25, 1]               51 51 49 35 27 27 13          994   0.77 %
    [0, 0.02, 0.1, 0.4, 1]           53 57 53 35 23 17 17         1034   0.96 %
    [0, 0.1, 1]                      53 55 51 29 21 27 21         1004   0.63 %
  No grading saves more than 5 %: the bottom layers' integrands need ~50 evaluations wherever the panels start,
  so the default run's 2x target over fixed m = 50 (issue 12) needs a better error estimate, or fewer nodes per
  split (what lazy splits, below, do).
  MiniLM, the default run, its first 3 dev questions; lazy splits (a failing panel becomes bare trapezoid panels
  between its nodes, at no cost, and only those that still fail get nodes, see adaptive.py) and the refinement
  fraction f (the share of the budget the panels left alone may keep after a round); evaluations per layer (mean,
  embeddings … layer 3, then layers 4, 5 where measured), cost as above per question over those layers, max δ; L2 =
  the importance vector's relative L2 error against an adaptive reference at δ ≤ 2e-5 (Lobatto-7, ≤ 205
  evaluations), max / median over the (question, layer) pairs; 2026-12-01
    split at nodes, f = ½, Lobatto-5 (the previous default)  53 65 53 33         cost 159   0.55 %   2.4 / 0.07 %
    lazy, f = ½, Lobatto-5                                   42 47 40 22              119   0.78 %   2.3 / 0.17 %
    ... with bare panels also held to |φ|-mass or token-mass guards            144 - 146   ≤ 0.55 % 2.4 / 0.1 %
    lazy, f = 0.9, Lobatto-5 (the default now)               39 46 36 19              111   0.80 %   2.3 / 0.48 %
      layers 0-5                                             39 46 36 19 20 23        121   0.80 %   2.3 / 0.46 %
    lazy, f = 0.9, Lobatto-4                                 30 35 28 15              85    0.69 %   6.8 / 0.55 %
      layers 0-5                                             30 35 28 15 18 13        94    0.94 %   6.8 / 0.55 %
    lazy, f = ½, Lobatto-4, layers 0-5                       34 38 31 18 20 13        104   0.90 %   4.9 / 0.46 %
    lazy, f = 0.9, Lobatto-7                                 46 41 35 21              115   0.86 %   2.2 / 0.66 %
    lazy, f = 0.9, Lobatto-5, criterion |Σ e_p|, layers 0-5  the same nodes as the default (no errors cancelled)
      ... one initial panel [0, 1], layers 0-5               40 30 34 23 15 20        108   0.79 %   31 / 0.86 % (*)
      ... f = 0.99, layers 0-5                               39 46 35 19 20 22        121   0.86 %   2.3 / 0.48 %
  Lazy splits cut the evaluations by a quarter at the same δ and L2; a larger f by a few % more (more, smaller
  rounds: free on a CPU, where the cost of a batch is linear in its rows, and the rounds of all layers are packed
  together). Lobatto-4 panels are cheaper still (1.8x under fixed m = 50's 175) but their few nodes per panel let
  the importance vector drift while δ passes (6.8 % L2 at layer 3 with δ 0.15 %): Lobatto-5 stays the default.
  Side by side on the default run's first 20 dev questions (`python -m bench.bench_ig_default`), the default then
  took 1.60x less time than fixed m = 50 (226.8 s vs 362.7 s on 2 cores), every δ ≤ 1 % (max 0.88 %).
  What the integrand looks like (the default run, 3 dev questions, φ on 257 equally spaced α, embeddings and
  layers 1-2): F(α) is a step, φ one to three spikes 0.01-0.03 wide somewhere in α ∈ [0.05, 0.65], nearly flat
  elsewhere. Lobatto-5 panels zoom in on a spike in factors of ~4 at 3 evaluations a level and end far more
  accurate there than needed (panel errors of 1e-5 against a budget of 1e-2); cheaper, more local refinement wins.
  MiniLM, the default run; evaluations per layer (mean, embeddings … layer 6), cost, max δ and L2 as above (L2
  against an adaptive reference at δ ≤ 2e-5), lazy splits and f = 0.9 unless said; 2026-12-02
   dev questions 0-3                                         evaluations per layer           cost   max δ   L2 max/med
    Lobatto-5, two panels (the default then)            37.5 38.2 33.8 18.8 19.5 23.2 9.0  111.6  0.80 %  6.2 / 0.38 %
    ... bare pieces take their parent's degree-4 interpolant instead of the trapezoid       136.8  0.79 %  6.0 / 0.63 %
    ... ... a local quadratic / cubic interpolant                                   117.6 / 131.5  ≤ 0.90 % 6.2 / 0.5 %
    ... first panels placed by a forward-only probe of F (9 points, then bisection of the intervals where F
        changes fast, to 1/64; panels around the steps)                       107.9 + 15 forwards  0.82 %  3.9 / 0.52 %
    Lobatto-4, two panels                               29.5 35.0 26.5 16.5 17.0 14.0 7.0   92.6  0.94 %  6.7 / 0.53 %
    Simpson (Lobatto-3), two panels                     28.8 30.0 24.5 15.0 13.8 17.0 8.5   85.0  0.84 %  6.6 / 0.92 %
    Simpson, four panels (the default now)              29.8 30.2 25.8 16.5 13.8 17.0 9.0   87.8  0.85 %  4.1 / 0.44 %
    ... three / eight panels                                                        86.5 / 101.3  ≤ 0.84 % 11 / 0.5 %
    ... f = ½ / f = 0.99                                                             99.4 / 86.6  ≤ 0.85 % 2.1-4.1 / 0.4 %
    ... criterion |Σ e_p|                               25.2 23.2 20.0 13.2 12.2 15.0 9.0   71.2  0.94 %  4.3 / 0.54 %
    fixed Gauss–Legendre m = 50                                                       175       108 %   36 %
   dev questions 4-9
    Lobatto-5, two panels (the default then)            35.0 44.5 27.0 20.5 20.5 20.0 9.0  110.5  0.75 %  5.5 / 0.41 %
    Simpson, four panels (the default now)              29.8 33.0 24.7 17.8 15.3 17.0 9.0   90.6  0.78 %  5.3 / 0.55 %
    ... criterion |Σ e_p|                               23.3 25.8 20.2 13.5 12.2 14.0 9.0   71.4  0.91 %  19.5 / 0.64 % (*)
  Simpson panels with lazy splits (a failing Simpson panel becomes its two trapezoid halves for free; a failing
  trapezoid gets its midpoint, one evaluation) refine a spike in halves at one evaluation a level: 20 % cheaper than
  Lobatto-5 at the same δ and L2. Four initial panels keep L2 at Lobatto-5's level where two let it drift (6.6 %);
  |Σ e_p| alone is cheaper still but let errors of opposite sign cancel (19.5 % L2 on questions 4-9). The probe
  found the steps (a forward pass is 0.35-0.5 of a gradient row here) but saved fewer evaluations than it cost.
  Side by side on the default run's first 20 dev questions, Simpson panels took 2.00x less time than fixed m = 50
  (88.3 s vs 176.9 s on 2 quiet cores), every δ ≤ 1 % (max 0.85 %).
  On all 200 default questions 1.97x (31.0 min vs 61.0 min). The higher layers' α = 1 nodes then rode on the
  embeddings' α = 1 row (`_adaptive_layers_together`; 15 layer-rows fewer per question, layer-weighted work 2.02x
  -> 2.08x under fixed m = 50): the first 20 questions went 2.00x -> 2.10x (different VMs), the 200 stayed 1.97x
  (19.3 min vs 38.1 min on a faster VM): the remaining margin must come from the embeddings' and layer 1's
  evaluations (a per-token error estimate, or a criterion between Σ|e_p| and |Σ e_p|).
  A criterion between the two, tried 2026-12-02: |Σ e_p| ≤ tol (δ itself) and Σ|e_p| ≤ K · tol (errors of opposite
  sign may cancel, but only so far); K = 1 is "panels", K = ∞ is "total". The default run's dev questions 0-5,
  evaluations per layer (mean, embeddings … layer 6), cost as above, max δ; L2 against the adaptive reference at
  δ ≤ 2e-5 (Lobatto-7), max / p95 / median over the (question, layer) pairs:
    K = 1 ("panels", the default)     30.5 30.7 26.5 16.3 14.8 17.5 9.0   89.8  0.85 %   4.1 / 3.6 / 0.56 %
    K = 1.5                           26.5 25.7 22.2 14.3 13.7 15.0 9.0   76.9  0.91 %  11.4 / 4.2 / 0.74 %
    K = 2                             25.2 24.2 20.7 14.0 13.0 15.0 9.0   72.9  0.91 %  11.8 / 6.3 / 0.72 %
    K = 3                             24.3 22.0 18.8 13.7 12.0 15.0 9.0   68.6  0.91 %  12.3 / 7.8 / 0.81 %
    K = 5                             22.0 20.2 17.2 13.7 12.0 15.0 9.0   63.6  0.91 %  12.3 / 7.8 / 0.92 %
    K = ∞ ("total")                   20.2 18.3 16.2 12.5 11.7 15.0 9.0   58.9  0.99 %  12.3 / 7.8 / 1.13 %
  Even K = 1.5 buys its 14 % fewer evaluations with a layer-1 importance vector 11 % off (question 1; 0.9 % under
  K = 1) while δ passes: the cancelling panel errors are exactly the part of the vector integral δ cannot see. The
  default stays K = 1; the 2x over fixed m = 50 has to come from elsewhere (wall seconds moved with the evaluations,
  within the shared VM's noise: K = 2 took 0.84x of K = 1's time for 0.81x the cost).
(*) false convergence: the scalar errors of few, low-order panels vanished by chance (3 and 13 evaluations) while
the importance vector was 30 % / 15 % off. Hence the default: 5-point panels, two of them to start with, and the
"panels" criterion (Σ|e_p|, so errors of opposite sign in two panels cannot cancel). δ checks one projection of the
vector integral; a per-token error estimate would close the remaining gap (not built).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from lit_rcqa.errors import UserError

RuleFunction = Callable[[int], "tuple[np.ndarray, np.ndarray]"]  # steps -> (alphas [m], weights [m]) on [0, 1]


@dataclass(frozen=True)
class Rule:
    """A registered integration rule: its function, one line of help, and the steps it accepts."""

    name: str
    function: RuleFunction
    help: str
    min_steps: int = 2               # the fewest points it takes (a trapezoid needs both ends)
    points: int | None = None        # a preset of this many points that ignores `steps` (the seed's 20)

    def __call__(self, steps: int) -> tuple[np.ndarray, np.ndarray]:
        return self.function(int(steps) if self.points is None else self.points)


RULES: dict[str, Rule] = {}  # the registry {name: rule}, in registration order
NESTED_RULES = ("romberg", "trapezoid")  # refinement families that only add points (refinement_schedule)
_REFINEMENT_ONLY = ("adaptive", "romberg")  # refinement methods that are no fixed rule
DEFAULT_RULE = "gausslegendre"
SEED_POINTS = 20


def register(name: str, *, min_steps: int = 2, points: int | None = None):
    """Decorator: register `function(steps) -> (alphas, weights)` as the rule `name`; its docstring's first line
    is the rule's help."""
    def add(function: RuleFunction) -> RuleFunction:
        if name in RULES or name in _REFINEMENT_ONLY:
            raise ValueError(f"an integration rule or refinement named {name!r} exists already")
        doc = (function.__doc__ or "").strip().splitlines()
        RULES[name] = Rule(name, function, doc[0] if doc else "", min_steps, points)
        return function
    return add


def unregister(name: str) -> None:
    del RULES[name]


def names() -> tuple[str, ...]:
    return tuple(RULES)


def refinement_names() -> tuple[str, ...]:
    """What a refinement schedule walks: the nested families, then every other registered rule (doubling)."""
    return NESTED_RULES + tuple(r for r in RULES if r not in NESTED_RULES)


def help_text() -> str:
    """One line per rule: `name: help`."""
    return "\n".join(f"{r.name}: {r.help}" for r in RULES.values())


def check(name: str, steps: int) -> Rule:
    """The rule `name`, if `steps` suits it; else one UserError naming the choices (the one place that checks)."""
    rule = RULES.get(name)
    if rule is None:
        raise UserError(f"unknown integration rule {name!r}; choose one of {', '.join(RULES)}")
    if rule.points is None and (int(steps) != steps or steps < rule.min_steps):
        raise UserError(f"integration rule {name!r} needs steps >= {rule.min_steps}, got {steps}")
    return rule


def integration_rule(name: str = DEFAULT_RULE, steps: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """(alphas [m], weights [m]) float64 of the named rule on [0, 1] with m = `steps` points ("seed": 20)."""
    return check(name, steps)(steps)


# --- the built-in rules: Captum's five (its alphas and weights exactly), the textbook trapezoid, the seed's ---
@register("riemann_left")
def _riemann_left(n: int):
    """left Riemann sum: α = k/m, k = 0 … m−1 (Captum's)"""
    return np.arange(n) / n, np.full(n, 1.0 / n)


@register("riemann_right")
def _riemann_right(n: int):
    """right Riemann sum: α = k/m, k = 1 … m (Captum's)"""
    return np.arange(1, n + 1) / n, np.full(n, 1.0 / n)


@register("riemann_middle")
def _riemann_middle(n: int):
    """midpoint rule: α = (k + ½)/m (Captum's)"""
    return (np.arange(n) + 0.5) / n, np.full(n, 1.0 / n)


@register("riemann_trapezoid")
def _riemann_trapezoid(n: int):
    """Captum's trapezoid: m points on [0, 1] but weights 1/m, halved at the ends (biased by −1/m)"""
    weights = np.full(n, 1.0 / n)
    weights[[0, -1]] /= 2
    return np.linspace(0.0, 1.0, n), weights


@register("gausslegendre")
def _gauss_legendre(n: int):
    """Gauss–Legendre nodes and weights on [0, 1] (Captum's; the default)"""
    nodes, w = np.polynomial.legendre.leggauss(n)  # on [-1, 1]
    return 0.5 * (nodes + 1.0), 0.5 * w


@register("seed", points=SEED_POINTS)
def _seed(n: int):
    """the original seed code: 20 points i/20, consecutive gradients averaged (ignores the steps)"""
    weights = np.full(n, 1.0 / (n - 1))
    weights[[0, -1]] /= 2
    return np.arange(n) / n, weights


@register("trapezoid")
def _trapezoid(n: int):
    """textbook trapezoid: m points on [0, 1], weights 1/(m−1), halved at the ends"""
    weights = np.full(n, 1.0 / (n - 1))
    weights[[0, -1]] /= 2
    return np.linspace(0.0, 1.0, n), weights


@dataclass(frozen=True)
class RefinementLevel:
    """One level of a refinement schedule; the caller keeps one weighted gradient sum per generation.

    new_alphas:       [n_new] points evaluated for the first time at this level
    new_weights:      [n_new] weight of each new point inside its generation's sum
    new_generations:  [n_new] int, the generation each new point's gradient is added to
    coeffs:           [n_generations] the estimate at this level = Σ_g coeffs[g] · generation_sum[g]
    steps:            total number of distinct points evaluated up to and including this level
    points:           number of points of this level's own rule (a nested level's estimate uses all of them)
    """

    new_alphas: np.ndarray
    new_weights: np.ndarray
    new_generations: np.ndarray
    coeffs: np.ndarray
    steps: int
    points: int


def _trapezoid_generation_coeffs(level: int) -> np.ndarray:
    """T_level as coefficients over generation sums: endpoints get h/2, every later generation h (h = 2^-level)."""
    h = 2.0 ** -level
    coeffs = np.full(level + 1, h)
    coeffs[0] = h / 2
    return coeffs


def romberg_coeffs(level: int) -> np.ndarray:
    """R(level, level) of Romberg's table as coefficients over the level + 1 generation sums."""
    # row[j] = coefficients of R(i, j) over generations; start from the trapezoid column R(i, 0).
    prev_row: list[np.ndarray] = []
    for i in range(level + 1):
        row = [np.pad(_trapezoid_generation_coeffs(i), (0, level - i))]
        for j in range(1, i + 1):
            factor = 4.0 ** j
            row.append((factor * row[j - 1] - prev_row[j - 1]) / (factor - 1.0))
        prev_row = row
    return prev_row[-1]


def _nested_new_points(level: int) -> np.ndarray:
    if level == 0:
        return np.array([0.0, 1.0])
    return (2 * np.arange(2 ** (level - 1)) + 1) / 2.0 ** level  # odd multiples of 2^-level


def refinement_schedule(name: str, start_steps: int = 5, max_steps: int = 257) -> Iterator[RefinementLevel]:
    """Levels of increasing accuracy, from about `start_steps` points up to at most `max_steps` points in total.

    Nested rules ("romberg", "trapezoid") start at the first level with >= start_steps points (2^k + 1, k >= 1)
    and only add new points; the other rules double their steps and re-evaluate (see the module docstring).
    `steps` counts every gradient evaluation so far, and never exceeds `max_steps` after the first level.
    """
    if name in NESTED_RULES:
        if max_steps < 3:
            raise UserError(f"refinement with {name!r} needs max_steps >= 3, got {max_steps}")
        level = 1
        while 2 ** level + 1 < start_steps and 2 ** (level + 1) + 1 <= max_steps:
            level += 1
        first_gens = range(level + 1)  # the first level brings every generation up to its own at once
        new = [_nested_new_points(g) for g in first_gens]
        gens = [np.full(len(a), g) for g, a in zip(first_gens, new)]
        while 2 ** level + 1 <= max_steps:
            coeffs = romberg_coeffs(level) if name == "romberg" else _trapezoid_generation_coeffs(level)
            alphas = np.concatenate(new)
            yield RefinementLevel(alphas, np.ones(len(alphas)), np.concatenate(gens), coeffs, 2 ** level + 1,
                                  2 ** level + 1)
            level += 1
            new, gens = [_nested_new_points(level)], [np.full(2 ** (level - 1), level)]
        return
    # Non-nested: fresh rule at start, 2·start, 4·start, ... steps; each level is its own generation.
    steps = start_steps
    level, total = 0, 0
    while level == 0 or total + steps <= max_steps:
        alphas, weights = integration_rule(name, steps)
        total += len(alphas)
        coeffs = np.zeros(level + 1)
        coeffs[-1] = 1.0
        yield RefinementLevel(alphas, weights, np.full(len(alphas), level), coeffs, total, len(alphas))
        if RULES[name].points is not None:  # a preset: more steps would evaluate the same points again
            return
        level += 1
        steps *= 2
