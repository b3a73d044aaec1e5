"""Faithful by default: analyze.py integrates every (example, layer) to δ ≤ 1 %, flags the ones that miss it at the
cap in the shards, counts them in the summary and the completeness table; fixed rules stay available."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from matplotlib.figure import Figure

from analyze import main
from lit_rcqa.analysis.completeness import COLUMNS, CompletenessAccumulator
from lit_rcqa.analyze_config import ig_settings, parse
from lit_rcqa.attribution import store
from lit_rcqa.plots.convergence import plot_convergence
from tests.attribution.test_store import LAYERS, make_result, write
from tests.tiny_run import make_tiny_run

FAST = ["--analyses", "none", "--logger", "none", "--no-progress"]


def test_the_default_is_the_adaptive_accuracy_target_and_fixed_rules_stay_available():
    default = ig_settings(parse([]))
    assert default.tolerance == 0.01 and default.refine_method == "adaptive" and default.max_steps == 257
    fixed = ig_settings(parse(["--steps", "50"]))  # --steps alone: the fixed Gauss-Legendre rule
    assert fixed.tolerance is None and (fixed.method, fixed.steps) == ("gausslegendre", 50)
    trapezoid = ig_settings(parse(["--method", "riemann_trapezoid", "--steps", "20"]))
    assert trapezoid.tolerance is None and (trapezoid.method, trapezoid.steps) == ("riemann_trapezoid", 20)
    seed = ig_settings(parse(["--method", "seed"]))
    assert seed.tolerance is None and seed.method == "seed"
    capped = ig_settings(parse(["--tolerance", "0.001", "--max-steps", "65"]))
    assert (capped.tolerance, capped.max_steps) == (0.001, 65)


def test_the_converged_flag_round_trips_through_the_store_and_old_shards_read_as_unknown(tmp_path):
    flagged = dataclasses.replace(make_result(0), converged=np.array([False, True, True]))
    write(tmp_path / "new", [flagged, dataclasses.replace(make_result(1), converged=np.ones(3, bool))])
    records = store.load(tmp_path / "new")
    np.testing.assert_array_equal(records["ex-0"].converged, [False, True, True])
    assert records["ex-0"].converged.dtype == bool and records["ex-1"].converged.all()
    write(tmp_path / "fixed", [make_result(0)])  # a fixed rule has no target: nothing stored
    assert store.load(tmp_path / "fixed")["ex-0"].converged is None


def test_completeness_counts_flagged_pairs_and_the_evaluations_distribution(tmp_path):
    acc = CompletenessAccumulator(LAYERS)
    steps = [[9, 5, 5], [33, 9, 5], [257, 17, 5]]
    for k, s in enumerate(steps):
        acc.add(dataclasses.replace(make_result(k), steps=np.array(s, np.int32), delta=np.array([0.5, 1e-3, 1e-4]),
                                    converged=np.array([k != 2, True, True])))
    write(tmp_path, [make_result(9)])  # a record without flags (fixed rule) counts as nothing flagged
    acc.add(dataclasses.replace(store.load(tmp_path)["ex-9"], steps=np.array([5, 5, 5], np.int32)))
    table = dict(zip(COLUMNS, acc.summary().T))
    np.testing.assert_array_equal(table["unconverged"], [1, 0, 0])
    assert acc.n_unconverged == 1
    np.testing.assert_allclose(table["steps_median"], np.median([[9, 5, 5], [33, 9, 5], [257, 17, 5], [5, 5, 5]], 0))
    assert table["steps_p95"][0] == pytest.approx(np.percentile([9, 33, 257, 5], 95))


def test_plot_convergence_returns_a_figure_and_checks_shapes():
    rng = np.random.default_rng(0)
    deltas, steps = rng.random((6, 3)) * 0.02, rng.integers(5, 60, (6, 3))
    deltas[0, 0], deltas[1, 1] = 0.0, np.nan  # an exact gap and an undefined one
    fig = plot_convergence(deltas, steps, LAYERS, tolerance=0.01)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert fig.axes[0].get_yscale() == "log"
    with pytest.raises(ValueError, match="must both be"):
        plot_convergence(deltas, steps[:, :2], LAYERS)


def test_analyze_by_default_meets_the_target_flags_misses_and_says_so(tmp_path, capsys):
    run = make_tiny_run(tmp_path / "runs" / "tiny")
    out = tmp_path / "default"
    assert main(["--run", str(run), "--num-examples", "3", "--out", str(out), *FAST]) == 0
    printed = capsys.readouterr().out
    records = store.load(out)
    assert len(records) == 3
    for rec in records.values():
        assert rec.converged is not None and rec.converged.all() and (rec.delta <= 0.01).all()
    manifest = store.read_manifest(out)["ig"]
    assert manifest["tolerance"] == 0.01 and manifest["refine_method"] == "adaptive"
    assert "accuracy target δ ≤ 0.01: every (example, layer) met it" in printed
    # a cap too small for the target: the misses are flagged in the shards and counted in the summary
    capped = tmp_path / "capped"
    assert main(["--run", str(run), "--num-examples", "3", "--out", str(capped), "--tolerance", "1e-9",
                 "--max-steps", "9", *FAST]) == 0
    printed = capsys.readouterr().out
    records = store.load(capped)
    missed = sum(int((~r.converged).sum()) for r in records.values())
    assert missed > 0 and all(((r.delta > 1e-9) == ~r.converged).all() for r in records.values())
    assert f"{missed} of 9 (example, layer) pairs missed it at the cap of 9 evaluations" in printed
