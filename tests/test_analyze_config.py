"""analyze.py's typed configuration (lit_rcqa/analyze_config.py): every option described in --help,
configs/analyze.yaml round-trips into the saved resolved config, dotted flags and the flat flags of earlier
versions give the same settings, a mistake is one line, and the defaults are the earlier analyze.py's."""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import subprocess
import sys

import pytest
import yaml

from lit_rcqa import analyze_config as ac
from lit_rcqa.errors import UserError
from lit_rcqa.paths import REPO_ROOT

CONFIG = REPO_ROOT / "configs" / "analyze.yaml"

# The defaults of `python analyze.py --help` before the typed configuration (flat flag -> default),
# transcribed from that help screen.
EARLIER_DEFAULTS = {
    "run": None, "runs_root": "runs", "out": None, "layers": "all", "num_examples": 200, "method": "adaptive",
    "steps": None, "tolerance": 0.01, "max_steps": 257, "target": "prob", "explain": "predicted",
    "baseline": "zero", "batch_size": 4, "max_batch_tokens": 16384, "hidden_examples": 200,
    "hidden_dtype": "float16", "accelerator": "cpu", "devices": 1, "strategy": "auto", "skip_ig": False,
    "analyses": "all", "max_analysis_examples": 1000, "logger": "wandb", "wandb_project": "lit_rcqa",
    "progress": True,
}


def value_at(config: ac.AnalyzeConfig, dotted: str):
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


def every_key(config) -> list[str]:
    keys = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        keys += [f"{f.name}.{k}" for k in every_key(value)] if dataclasses.is_dataclass(value) else [f.name]
    return keys


def flatten(tree: dict, prefix: str = "") -> dict:
    """A nested YAML tree as {dotted key: value}."""
    flat = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
    return flat


@pytest.fixture(scope="module")
def help_text() -> str:
    """What `python analyze.py --help` prints: the real entry point, as a user runs it."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "COLUMNS": "100"}
    done = subprocess.run([sys.executable, str(REPO_ROOT / "analyze.py"), "--help"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    return done.stdout


def test_every_option_has_a_description(help_text):
    options: dict[str, str] = {}
    flag = None
    for line in help_text.splitlines():
        match = re.match(r"^  (--[\w.]+)", line)
        if match or (line and not line.startswith(" ")):
            flag = match.group(1) if match else None
            if flag:
                parts = re.split(r"\s{2,}", line[match.end():].lstrip(), maxsplit=1)
                options[flag] = parts[1] if len(parts) == 2 else ""
        elif flag:
            options[flag] += " " + line.strip()
    expected = {f"--{k}" for k in every_key(ac.AnalyzeConfig())}
    assert expected <= set(options), expected - set(options)
    # every knob the issue named as unreachable before is an option now
    assert {"--ig.refine_method", "--ig.min_steps", "--analysis.top_k", "--analysis.jsd_k",
            "--analysis.context_window", "--analysis.tsne_examples", "--analysis.html_examples"} <= set(options)
    bare = sorted(f for f in expected if not re.sub(r"\(type: .*?\)", "", options[f], flags=re.S).strip())
    assert not bare, f"options without a description: {bare}"


def test_the_help_lists_the_registered_rules_and_analyses(help_text):
    from lit_rcqa.analysis import registry
    from lit_rcqa.attribution import rules

    text = " ".join(help_text.split())
    for name in (*rules.RULES, *registry.names()):
        assert name in text, name


def test_configs_analyze_yaml_holds_every_default_and_round_trips_into_the_resolved_config():
    shipped = yaml.safe_load(CONFIG.read_text())
    from_file = ac.parse(["--config", str(CONFIG)])
    assert from_file == ac.parse([])  # the file's values are the defaults
    flat = {k: value_at(from_file, k) for k in every_key(from_file)}
    in_file = flatten(shipped)
    assert set(in_file) == set(flat)  # every setting is in the file
    resolved = yaml.safe_load(ac.resolved_yaml(from_file))
    assert flatten(resolved) == in_file  # each value written back as the file gives it


def test_a_changed_config_round_trips_through_the_saved_resolved_yaml(tmp_path):
    config = ac.parse(["--config", str(CONFIG), "--ig.tolerance", "0.005", "--analysis.jsd_k", "[3, 7]",
                       "--loop.num_examples", "null", "--run", "runs/x"])
    saved = tmp_path / "analyze_config.yaml"
    saved.write_text(ac.resolved_yaml(config))
    again = ac.parse(["--config", str(saved)])
    assert again == config
    assert (again.ig.tolerance, again.analysis.jsd_k, again.loop.num_examples, again.run) == \
        (0.005, (3, 7), None, "runs/x")


def test_flat_flags_and_dotted_flags_give_the_same_config():
    flat = ac.parse(["--layers", "0,2", "--num-examples", "5", "--steps", "4", "--method", "riemann_trapezoid",
                     "--hidden-examples", "1", "--logger", "none", "--no-progress", "--skip-ig",
                     "--analyses", "jsd,roles", "--max-analysis-examples", "7", "--runs-root=elsewhere",
                     "--wandb-project", "p", "--devices", "2", "--strategy", "ddp", "--max-steps", "65"])
    dotted = ac.parse(["--ig.layers", "0,2", "--loop.num_examples", "5", "--ig.steps", "4",
                       "--ig.method", "riemann_trapezoid", "--loop.hidden_examples", "1", "--logger", "none",
                       "--loop.progress", "false", "--skip_ig", "true", "--analysis.analyses", "jsd,roles",
                       "--analysis.max_examples", "7", "--runs_root", "elsewhere", "--wandb_project", "p",
                       "--loop.devices", "2", "--loop.strategy", "ddp", "--ig.max_steps", "65"])
    assert flat == dotted
    assert (flat.loop.num_examples, flat.ig.steps, flat.loop.progress, flat.skip_ig, flat.analysis.max_examples,
            flat.loop.devices) == (5, 4, False, True, 7, 2)
    assert ac.parse(["--no-skip-ig", "--progress"]) == ac.parse([])


def test_the_parsed_config_holds_plain_values_that_safe_yaml_and_json_can_write():
    """jsonargparse's checked types (PositiveInt, ...) stay in the parser: the config the trackers log and
    analyze_config.yaml holds are plain int/float/str/bool/None and tuples of them."""
    config = ac.parse(["--config", str(CONFIG), "--ig.tolerance", "0.005", "--analysis.jsd_k", "[3, 7]",
                       "--loop.devices", "2", "--ig.steps", "9"])
    plain = (bool, int, float, str, type(None))
    leaves = [value_at(config, k) for k in every_key(config)]
    odd = [v for v in leaves for item in (v if isinstance(v, tuple) else (v,)) if type(item) not in plain]
    assert not odd, [type(v) for v in odd]
    assert yaml.safe_load(yaml.safe_dump(dataclasses.asdict(config))) == dataclasses.asdict(config) | \
        {"analysis": {**dataclasses.asdict(config.analysis), "jsd_k": [3, 7]}}


@pytest.mark.parametrize("argv, fragment", [
    (["--ig.tolerance", "-1"], "--ig.tolerance"),
    (["--num-examples", "0"], "--loop.num_examples 0"),
    (["--ig.target", "probability"], "--ig.target"),
    (["--method", "simpson"], "simpson"),
    (["--steps", "1"], "steps"),
    (["--analyses", "jsd,nonsense"], "nonsense"),
    (["--no-such-flag", "1"], "--no_such_flag"),
    (["--ig.no_such_key", "1"], "--ig.no_such_key"),
    (["--analysis.jsd_k", "two"], "--analysis.jsd_k"),
    (["--ig.split", "thirds"], "--ig.split"),
    (["--ig.refine_fraction", "1.5"], "refine_fraction"),
    (["--ig.panel_points", "2"], "panel_points"),
    (["--ig.panels", "0"], "--ig.panels"),
    (["--ig.criterion", "sum"], "--ig.criterion"),
])
def test_a_bad_flag_or_value_is_one_line_naming_it(argv, fragment):
    with pytest.raises(UserError) as err:
        ac.parse(argv)
    message = str(err.value)
    assert "\n" not in message and fragment in message, message


def test_a_bad_value_in_a_config_file_is_one_line_naming_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("ig:\n  max_steps: many\n")
    with pytest.raises(UserError) as err:
        ac.parse(["--config", str(path)])
    assert "\n" not in str(err.value) and "ig.max_steps" in str(err.value), str(err.value)


def test_a_flat_config_file_of_earlier_versions_is_one_line_naming_the_nested_key(tmp_path):
    path = tmp_path / "flat.yaml"  # analyze_config.yaml as earlier versions saved it: flat keys
    path.write_text("num_examples: 5\nsteps: 8\nlogger: none\n")
    with pytest.raises(UserError) as err:
        ac.parse(["--config", str(path)])
    message = str(err.value)
    assert "\n" not in message and "num_examples" in message and "loop.num_examples" in message, message
    assert "nested" in message and "configs/analyze.yaml" in message, message


def test_the_defaults_are_the_earlier_analyze_py_defaults():
    config = ac.parse([])
    for flat, default in EARLIER_DEFAULTS.items():
        key = ac.RENAMED.get(flat) or ac.flat_aliases().get(flat, flat)
        assert value_at(config, key) == default, (flat, key)


def test_the_defaults_of_the_new_knobs_are_the_librarys():
    from lit_rcqa.analysis.pipeline import run_analyses
    from lit_rcqa.attribution.integrated_gradients import IGSettings

    config = ac.parse([])
    assert (config.ig.min_steps, config.ig.refine_method) == (IGSettings.min_steps, IGSettings.refine_method)
    assert (config.ig.split, config.ig.refine_fraction) == (IGSettings.split, IGSettings.refine_fraction)
    assert (config.ig.panel_points, config.ig.criterion) == (IGSettings.panel_points, IGSettings.criterion)
    assert tuple(k / config.ig.panels for k in range(config.ig.panels + 1)) == IGSettings.breakpoints
    defaults = {name: p.default for name, p in inspect.signature(run_analyses).parameters.items()}
    a = config.analysis
    assert (a.top_k, tuple(a.jsd_k), a.context_window, a.tsne_examples, a.html_examples) == \
        (defaults["top_k"], tuple(defaults["jsd_k"]), defaults["context_window"], defaults["tsne_examples"],
         defaults["html_examples"])


def test_ig_settings_follow_the_method_and_steps_rules():
    default = ac.ig_settings(ac.parse([]))  # adaptive: every layer to the tolerance
    assert (default.tolerance, default.refine_method, default.max_steps, default.min_steps) == (0.01, "adaptive",
                                                                                                 257, 5)
    fixed = ac.ig_settings(ac.parse(["--steps", "50"]))  # steps alone: the fixed Gauss-Legendre rule
    assert (fixed.tolerance, fixed.method, fixed.steps) == (None, "gausslegendre", 50)
    trapezoid = ac.ig_settings(ac.parse(["--ig.method", "riemann_trapezoid", "--ig.steps", "20"]))
    assert (trapezoid.tolerance, trapezoid.method, trapezoid.steps) == (None, "riemann_trapezoid", 20)
    nested = ac.ig_settings(ac.parse(["--ig.refine_method", "romberg", "--ig.min_steps", "3",
                                      "--ig.tolerance", "0.001", "--loop.max_batch_tokens", "512"]))
    assert (nested.refine_method, nested.min_steps, nested.tolerance, nested.max_batch_tokens) == \
        ("romberg", 3, 0.001, 512)
    assert (default.split, default.refine_fraction) == ("lazy", 0.9)  # lazy splits, refine to 90 % of the budget
    assert (default.panel_points, default.breakpoints, default.criterion) == (3, (0, 0.25, 0.5, 0.75, 1), "panels")
    panels = ac.ig_settings(ac.parse(["--ig.split", "nodes", "--ig.refine_fraction", "0.5", "--ig.panel_points", "5",
                                      "--ig.panels", "2", "--ig.criterion", "total"]))
    assert (panels.split, panels.refine_fraction, panels.refine_method) == ("nodes", 0.5, "adaptive")
    assert (panels.panel_points, panels.breakpoints, panels.criterion) == (5, (0, 0.5, 1), "total")


def test_ig_options_and_analysis_kwargs_carry_every_setting():
    from lit_rcqa.analysis.pipeline import run_analyses

    config = ac.parse(["--layers", "0,1", "--num-examples", "9", "--explain", "gold", "--baseline", "mean",
                       "--hidden-examples", "2", "--hidden-dtype", "float32", "--batch-size", "3",
                       "--accelerator", "gpu", "--devices", "2", "--strategy", "ddp", "--no-progress",
                       "--analyses", "roles,jsd", "--analysis.top_k", "4", "--analysis.jsd_k", "[3]",
                       "--analysis.context_window", "2", "--analysis.tsne_examples", "1",
                       "--analysis.html_examples", "0", "--max-analysis-examples", "11"])
    options = ac.ig_options(config)
    assert (options.layers, options.num_examples, options.explain, options.baseline, options.hidden_examples,
            options.hidden_dtype, options.batch_size, options.accelerator, options.devices, options.strategy,
            options.progress) == ("0,1", 9, "gold", "mean", 2, "float32", 3, "gpu", 2, "ddp", False)
    kwargs = ac.analysis_kwargs(config)
    assert kwargs == dict(analyses=["jsd", "roles"], max_examples=11, top_k=4, jsd_k=(3,), context_window=2,
                          tsne_examples=1, html_examples=0, progress=False)  # report order
    assert set(kwargs) <= set(inspect.signature(run_analyses).parameters)


def test_analyze_py_saves_configs_analyze_yaml_resolved_beside_its_outputs(tmp_path):
    """`python analyze.py --config configs/analyze.yaml` plus overrides: analyze_config.yaml holds the file's
    values, run/out resolved, the overrides as given; it reads back as the same config; the tracker's config is
    the same tree."""
    from analyze import main  # the root script's: it passes the app's IG callbacks
    from tests.tiny_run import make_tiny_run

    run = make_tiny_run(tmp_path / "runs" / "tiny")
    overrides = {"ig.tolerance": 0.005, "ig.max_steps": 33, "loop.num_examples": 2, "loop.hidden_examples": 1,
                 "loop.progress": False, "analysis.analyses": "jsd", "analysis.html_examples": 0,
                 "analysis.tsne_examples": 0, "logger": "csv"}
    argv = ["--config", str(CONFIG), "--run", str(run)]
    for key, value in overrides.items():
        argv += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    assert main(argv) == 0
    out = run / "analysis"
    saved = yaml.safe_load((out / "analyze_config.yaml").read_text())
    expected = {**flatten(yaml.safe_load(CONFIG.read_text())), **overrides, "run": str(run), "out": str(out)}
    assert flatten(saved) == expected
    assert ac.parse(["--config", str(out / "analyze_config.yaml")]) == \
        dataclasses.replace(ac.parse(argv), run=str(run), out=str(out))
    # the tracker's config (CSVLogger: hparams.yaml) is the saved tree; its ig group is the manifest's, the
    # settings the shards were computed with
    tracked = yaml.safe_load((out / "csv" / "hparams.yaml").read_text())
    assert {k: tracked[k] for k in ("run", "out", "loop", "analysis", "logger")} == \
        {k: saved[k] for k in ("run", "out", "loop", "analysis", "logger")}
    assert (tracked["ig"]["tolerance"], tracked["ig"]["max_steps"]) == (0.005, 33)
