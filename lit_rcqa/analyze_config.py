"""The configuration of `python analyze.py`: one typed tree, parsed the way LightningCLI parses train.py's.

    python analyze.py --config configs/analyze.yaml --ig.tolerance 0.005 --loop.num_examples 1000
    python analyze.py --steps 50 --num-examples 1000          # the flat flags of earlier versions still work

Groups: `ig` (what IG explains and how it integrates), `loop` (the prediction loop: which examples, batches,
devices), `analysis` (what the analyses compute), and the top-level run, output and tracker options. The
descriptions in `--help` come from the `Args:` sections below (jsonargparse reads them), so each option is
described once, here. `parse(argv)` gives an `AnalyzeConfig`; `resolved_yaml` is what analyze.py saves beside
its outputs as analyze_config.yaml; `ig_settings`, `ig_options` and `analysis_kwargs` hand the groups to
IG (`IGSettings`), the prediction loop (`IGOptions`) and `run_analyses`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

from jsonargparse.typing import NonNegativeInt, PositiveFloat, PositiveInt

from lit_rcqa.attribution.adaptive import CRITERIA, SPLITS
from lit_rcqa.errors import UserError, parser_error_line
from lit_rcqa.tracking import LoggerKind


@dataclass(frozen=True)
class IGConfig:
    """Integrated Gradients: what is explained, and how each layer's path integral is computed.

    Args:
        method: "adaptive" (the default: every (example, layer) integrated to `tolerance`) or a fixed rule of
            `steps` points (the rules are listed at the top of this help).
        steps: A fixed rule's points m per layer (at least 2; null: 50). Given alone, it selects the fixed
            Gauss-Legendre rule.
        tolerance: Adaptive: the accuracy target on each (example, layer)'s completeness gap δ.
        max_steps: Adaptive: cap on gradient evaluations per (example, layer); a pair that misses the tolerance
            at the cap is flagged (`converged` in the shards).
        min_steps: Adaptive with a doubling or nested refine_method: points of the first level.
        refine_method: Adaptive: "adaptive" (Gauss-Lobatto panels split where their error is), a fixed rule
            refined by doubling its points, or the nested "romberg"/"trapezoid" schedules.
        split: Adaptive panels: "lazy" (a failing panel's pieces start as trapezoids on nodes already evaluated;
            only those that still fail get nodes, the default), "nodes" (every piece gets nodes; the rule before
            2026-12-01) or "halves".
        refine_fraction: Adaptive panels: each round refines the worst panels until the rest hold at most this
            share of the error budget (in [0, 1); 0.5 before 2026-12-01).
        panel_points: Adaptive panels: Gauss-Lobatto points per panel, ends included (3 = Simpson, the default
            since 2026-12-02; 5 before).
        panels: Adaptive panels: the number of equal panels each layer starts with (4; 2 before 2026-12-02).
        criterion: Adaptive panels: hold the sum of the panels' absolute errors to the tolerance ("panels":
            errors of opposite sign cannot cancel) or the completeness gap alone ("total").
        target: Explain p_start + p_end of the explained span ("prob", the paper) or the two logits ("logit").
        explain: Explain the model's own answer ("predicted", the paper) or the gold answer ("gold").
        baseline: The IG baseline b: zeros ("zero") or the mean hidden state over the tokens ("mean").
        layers: "all", indices like "0,6,12" (0 = the embeddings) or names like "embeddings,layer_06".
    """

    method: str = "adaptive"
    steps: Optional[int] = None
    tolerance: PositiveFloat = 0.01
    max_steps: PositiveInt = 257
    min_steps: PositiveInt = 5
    refine_method: str = "adaptive"
    split: Literal[SPLITS] = "lazy"  # the names adaptive.py defines
    refine_fraction: float = 0.9
    panel_points: PositiveInt = 3
    panels: PositiveInt = 4
    criterion: Literal[CRITERIA] = "panels"
    target: Literal["prob", "logit"] = "prob"
    explain: Literal["predicted", "gold"] = "predicted"
    baseline: Literal["zero", "mean"] = "zero"
    layers: str = "all"


@dataclass(frozen=True)
class LoopConfig:
    """The prediction loop that runs IG: which dev questions, in what batches, on which devices.

    Args:
        num_examples: The first N dev questions of the training run (null: all).
        batch_size: Examples per prediction batch, and so per shard file.
        max_batch_tokens: Interpolation rows x tokens per forward/backward chunk: the memory budget.
        hidden_examples: Store the hidden states of the first N examples (for the t-SNE plots).
        hidden_dtype: Dtype of the stored hidden states.
        accelerator: Lightning accelerator: cpu, gpu (IG runs on that device) or auto.
        devices: Lightning devices, e.g. 2 with strategy ddp (each rank writes its own shards).
        strategy: Lightning strategy, e.g. ddp.
        progress: Show progress bars (--no-progress hides them).
    """

    num_examples: Optional[PositiveInt] = 200
    batch_size: PositiveInt = 4
    max_batch_tokens: PositiveInt = 16384
    hidden_examples: NonNegativeInt = 200
    hidden_dtype: Literal["float16", "float32"] = "float16"
    accelerator: str = "cpu"
    devices: Union[int, str] = 1
    strategy: str = "auto"
    progress: bool = True


@dataclass(frozen=True)
class AnalysisConfig:
    """The analyses of the stored IG records, and their report.

    Args:
        analyses: Comma-separated analysis names, "all" or "none"; the names are listed in this help's
            description above.
        max_examples: Analyse at most this many records (null: all); flat flag --max-analysis-examples.
        top_k: Words per layer counted as its top words (roles, quantifiers, tables, highlights).
        jsd_k: The k of the top-k Jensen-Shannon divergence variants between layers.
        context_window: Words either side of the answer that count as its context (roles).
        tsne_examples: Examples shown as t-SNE plots of their hidden states.
        html_examples: Examples shown as highlighted passages in the report.
    """

    analyses: str = "all"
    max_examples: Optional[PositiveInt] = 1000
    top_k: PositiveInt = 5
    jsd_k: tuple[PositiveInt, ...] = (2, 5)
    context_window: NonNegativeInt = 5
    tsne_examples: NonNegativeInt = 3
    html_examples: NonNegativeInt = 5


@dataclass(frozen=True)
class AnalyzeConfig:
    """Every setting of analyze.py.

    Args:
        run: The training run folder (default: the latest complete run in runs_root).
        runs_root: Where to look for the latest complete run.
        out: The output folder (default: <run>/analysis).
        skip_ig: Reuse the existing shards in out and run only the analyses.
        logger: Tracker: wandb (offline unless configured), csv, tensorboard or none.
        wandb_project: W&B project of the analysis run.
        ig: What IG explains and how it integrates.
        loop: The prediction loop that runs IG.
        analysis: The analyses and the report.
    """

    run: Optional[str] = None
    runs_root: str = "runs"
    out: Optional[str] = None
    skip_ig: bool = False
    logger: LoggerKind = "wandb"
    wandb_project: str = "lit_rcqa"
    ig: IGConfig = field(default_factory=IGConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)


GROUPS = {"ig": IGConfig, "loop": LoopConfig, "analysis": AnalysisConfig}
RENAMED = {"max_analysis_examples": "analysis.max_examples"}  # flat flags whose dotted name differs


def flat_aliases() -> dict[str, str]:
    """{flat flag name: dotted key}: `--num-examples` is `--loop.num_examples`, as analyze.py's flags were."""
    aliases = {f.name: f"{group}.{f.name}" for group, kind in GROUPS.items() for f in dataclasses.fields(kind)}
    aliases.update(RENAMED)
    return aliases


_SWITCHES = {"skip_ig": "skip_ig", "progress": "loop.progress"}  # flat `--x` / `--no-x` switches
_BOOL_WORDS = ("true", "false", "yes", "no")


def dotted_argv(argv: list[str]) -> list[str]:
    """The flat flags (`--num-examples 5`, `--no-progress`, `--runs-root=x`) as dotted ones; the rest as given."""
    aliases = flat_aliases()
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg, i = argv[i], i + 1
        if not arg.startswith("--") or "." in arg.partition("=")[0]:
            out.append(arg)
            continue
        name, eq, value = arg[2:].partition("=")
        key = name.replace("-", "_")
        switch = key[3:] if key.startswith("no_") and key[3:] in _SWITCHES else key
        if switch not in _SWITCHES:
            dotted = aliases.get(key, key)
            out.append(f"--{dotted}={value}" if eq else f"--{dotted}")
        elif eq:  # --skip-ig=false
            out.append(f"--{_SWITCHES[switch]}={value}")
        elif switch == key and i < len(argv) and argv[i].lower() in _BOOL_WORDS:  # --skip_ig true
            out.append(f"--{_SWITCHES[switch]}={argv[i]}")
            i += 1
        else:  # --skip-ig, --no-progress
            out.append(f"--{_SWITCHES[switch]}={'true' if switch == key else 'false'}")
    return out


def _help_lists() -> tuple[str, str]:
    """The integration rules and the analyses, from their registries (the help shows today's names)."""
    from lit_rcqa.analysis import registry
    from lit_rcqa.attribution import rules

    import lit_rcqa.analysis  # noqa: F401  (importing the package registers the built-in analyses)

    return ", ".join(rules.RULES), ", ".join(registry.names())


def build_parser():
    """analyze.py's parser: --config, the top-level options, and one group per dataclass above."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    rule_names, analysis_names = _help_lists()
    aliases = ", ".join(f"--{flat.replace('_', '-')} = --{key}" for flat, key in flat_aliases().items())
    parser = ArgumentParser(
        prog="analyze.py", exit_on_error=False, default_env=False,
        description="Layer-wise Integrated Gradients over a training run's dev split, then the analyses. "
                    f"Integration rules (--ig.method): adaptive, {rule_names}. "
                    f"Analyses (--analysis.analyses): {analysis_names}.",
        epilog=f"The flat flags of earlier versions still work: {aliases}; --skip-ig/--no-skip-ig, "
               "--progress/--no-progress, --runs-root, --wandb-project.")
    parser.add_argument("--config", action=ActionConfigFile,
                        help="A YAML file of these settings, nested by group as configs/analyze.yaml; later "
                             "flags override it.")
    parser.add_class_arguments(AnalyzeConfig)
    return parser


def _nesting_hint(message: str) -> str:
    """A flat key in a --config file (earlier versions saved analyze_config.yaml flat): where it goes now."""
    match = re.search(r"Option '(\w+)' is not accepted", message)
    dotted = flat_aliases().get(match.group(1), "") if match else ""
    if "." not in dotted:
        return ""
    group, _, key = dotted.partition(".")
    return (f" in a --config file, which is nested by group: write it as `{group}: {{{key}: ...}}` "
            f"(--{dotted} on the command line); see configs/analyze.yaml")


def parse(argv: list[str]) -> AnalyzeConfig:
    """The configuration from `--config` files and flags; any mistake is one UserError line."""
    parser = build_parser()
    try:
        namespace = parser.parse_args(dotted_argv(list(argv)))
    except argparse.ArgumentError as err:
        raise UserError(parser_error_line(str(err)) + _nesting_hint(str(err))) from None
    built = parser.instantiate(namespace)
    config = plain(AnalyzeConfig(**{f.name: built[f.name] for f in dataclasses.fields(AnalyzeConfig)}))
    check(config)
    return config


def plain(value: Any) -> Any:
    """`value` with jsonargparse's checked numbers (PositiveInt, ...: int/float subclasses) as the plain int and
    float they are, in dataclasses and tuples too: safe YAML, the trackers and JSON write only plain values."""
    if dataclasses.is_dataclass(value):
        return dataclasses.replace(value, **{f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)})
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    return float(value) if isinstance(value, float) else value


def check(config: AnalyzeConfig) -> None:
    """What the types cannot say, checked by the objects that own the rules (one place each)."""
    from lit_rcqa.analysis import registry

    import lit_rcqa.analysis  # noqa: F401  (registers the built-in analyses)

    try:
        ig_settings(config)  # an unknown rule, too few steps, a bad tolerance
    except UserError as err:
        raise UserError(f"--ig: {err}") from None
    try:
        registry.parse(config.analysis.analyses)
    except UserError as err:
        raise UserError(f"--analysis.analyses: {err}") from None


def as_tree(config: AnalyzeConfig) -> dict[str, Any]:
    """The configuration as nested plain dicts and lists (tuples as lists), the layout of analyze_config.yaml:
    what the trackers log (CSVLogger writes a tuple as a Python-tagged YAML node)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def resolved_yaml(config: AnalyzeConfig) -> str:
    """The configuration as YAML, every key written (null included): analyze_config.yaml beside the outputs,
    which `--config` reads back."""
    return build_parser().dump(dataclasses.asdict(config), skip_none=False)


# --- the groups as the objects that use them --------------------------------------------------------------
def ig_settings(config: AnalyzeConfig):
    """IGSettings: method "adaptive" (and no steps) integrates every layer to the tolerance; otherwise a fixed
    rule of `steps` points (Gauss-Legendre when only steps is given)."""
    from lit_rcqa.attribution.integrated_gradients import IGSettings

    ig = config.ig
    adaptive = ig.method == "adaptive" and ig.steps is None
    return IGSettings(steps=IGSettings.steps if ig.steps is None else ig.steps,
                      method=IGSettings.method if ig.method == "adaptive" else ig.method, target=ig.target,
                      tolerance=ig.tolerance if adaptive else None, refine_method=ig.refine_method,
                      min_steps=ig.min_steps, max_steps=ig.max_steps, split=ig.split,
                      refine_fraction=ig.refine_fraction, panel_points=ig.panel_points,
                      breakpoints=tuple(k / ig.panels for k in range(ig.panels + 1)),
                      criterion=ig.criterion, max_batch_tokens=config.loop.max_batch_tokens)


def ig_options(config: AnalyzeConfig, **extra: Any):
    """IGOptions for `run_ig`: the examples and what is explained (ig), how the loop runs (loop); `extra`: the
    caller's own fields (hooks)."""
    from lit_rcqa.attribution.run import IGOptions

    ig, loop = config.ig, config.loop
    return IGOptions(layers=ig.layers, explain=ig.explain, baseline=ig.baseline, num_examples=loop.num_examples,
                     hidden_examples=loop.hidden_examples, hidden_dtype=loop.hidden_dtype, batch_size=loop.batch_size,
                     accelerator=loop.accelerator, devices=loop.devices, strategy=loop.strategy,
                     progress=loop.progress, **extra)


def analysis_kwargs(config: AnalyzeConfig) -> dict[str, Any]:
    """`run_analyses` keyword arguments from the analysis group (the chosen names resolved, in report order)."""
    from lit_rcqa.analysis import registry

    import lit_rcqa.analysis  # noqa: F401  (registers the built-in analyses)

    a = config.analysis
    return dict(analyses=registry.parse(a.analyses), max_examples=a.max_examples, top_k=a.top_k,
                jsd_k=tuple(a.jsd_k), context_window=a.context_window, tsne_examples=a.tsne_examples,
                html_examples=a.html_examples, progress=config.loop.progress)
