"""`python analyze.py --layers all`: layer-wise IG over a training run's dev split, then every analysis.

    python analyze.py --layers all                         # latest complete run in runs/, 200 dev questions
    python analyze.py --run runs/NAME --layers 0,3,6 --num-examples 1000 --steps 50 --method gausslegendre
    python analyze.py --skip-ig --analyses jsd,roles       # reuse the shards, rerun two analyses
    python analyze.py --devices 2 --strategy ddp --accelerator cpu    # ranks write their own shards

Outputs under `--out` (default `<run>/analysis`): manifest.json and scores/ (the IG shards, read with
`lit_rcqa.attribution.store`), figures/, tables/, report.html, analyze_config.yaml (this command's
resolved settings) and the tracker's files. `--out` must be new, empty or an analysis folder written here,
and one analyze.py at a time works in it (a second one on the same folder is refused in one line).
Re-running the same command resumes an interrupted IG run; shards computed with other settings (every shard
carries them) or damaged or edited shards are refused in one line naming what to delete.
SIGTERM or Ctrl-C ends the run within a moment with exit status 128 + signal number and one stderr line;
every shard on disk is complete (they are written atomically), so the same command resumes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional, Union

from lit_rcqa import console, process, runs, tracking
from lit_rcqa.errors import UserError
from lit_rcqa.tracking import LoggerKind

if TYPE_CHECKING:
    from lit_rcqa.attribution.run import IGCallbacks

# The stderr line of a stop signal (`process.stop_on_signals`).
INTERRUPTED = "analyze.py: interrupted by {signal}; finished shards are kept, re-run the same command to resume"


def _opt(default: Any, help: str):
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class AnalyzeConfig:
    """Every flag of analyze.py (`--num-examples` is field `num_examples`); types are checked when parsing."""

    run: Optional[str] = _opt(None, "training run folder (default: the latest complete run in --runs-root)")
    runs_root: str = _opt("runs", "where to look for the latest complete run")
    out: Optional[str] = _opt(None, "output folder (default: <run>/analysis)")
    layers: str = _opt("all", "'all', indices like '0,6,12' (0 = embeddings) or names like 'embeddings,layer_06'")
    num_examples: Optional[int] = _opt(200, "first N dev questions (null: all)")
    method: str = _opt("adaptive", "adaptive (every layer to --tolerance, the default) or a fixed rule: "
                                   "gausslegendre, riemann_left/right/middle/trapezoid, seed")
    steps: Optional[int] = _opt(None, "a fixed rule's points m per layer (at least 2; default 50); alone, it "
                                      "selects the fixed gausslegendre rule")
    tolerance: float = _opt(0.01, "adaptive: accuracy target on each (example, layer)'s completeness gap δ")
    max_steps: int = _opt(257, "adaptive: cap on gradient evaluations per (example, layer); one that misses "
                               "--tolerance at the cap is flagged")
    target: Literal["prob", "logit"] = _opt("prob", "explain p_start + p_end, or the two logits")
    explain: Literal["predicted", "gold"] = _opt("predicted", "explain the model's answer (paper) or the gold one")
    baseline: Literal["zero", "mean"] = _opt("zero", "IG baseline: zeros, or the mean hidden state over the tokens")
    batch_size: int = _opt(4, "examples per prediction batch (= per shard)")
    max_batch_tokens: int = _opt(16384, "interpolation rows x tokens per forward/backward chunk (memory)")
    hidden_examples: int = _opt(200, "store hidden states of the first N examples (t-SNE)")
    hidden_dtype: Literal["float16", "float32"] = _opt("float16", "dtype of the stored hidden states")
    accelerator: str = _opt("cpu", "Lightning accelerator: cpu, gpu (IG runs on that device), auto")
    devices: Union[int, str] = _opt(1, "Lightning devices, e.g. 2 with --strategy ddp")
    strategy: str = _opt("auto", "Lightning strategy, e.g. ddp")
    skip_ig: bool = _opt(False, "reuse the existing shards in --out; run only the analyses")
    analyses: str = _opt("all", "comma-separated: jsd,roles,quantifiers,tsne,flips,evidence,html; 'all' or 'none'")
    max_analysis_examples: Optional[int] = _opt(1000, "analyse at most this many records (null: all)")
    logger: LoggerKind = _opt("wandb", "tracker: wandb (offline unless configured), csv, tensorboard, none")
    wandb_project: str = _opt("lit_rcqa", "W&B project")
    progress: bool = _opt(True, "progress bars (--no-progress to hide them)")


def build_parser():
    from jsonargparse import ActionConfigFile, ActionYesNo, ArgumentParser

    parser = ArgumentParser(prog="analyze.py", description=__doc__.split("\n\n")[0], exit_on_error=False,
                            default_env=False)
    parser.add_argument("--config", action=ActionConfigFile, help="a YAML file of these settings")
    types = typing.get_type_hints(AnalyzeConfig)  # the annotations are strings (postponed evaluation)
    for f in dataclasses.fields(AnalyzeConfig):
        flag = "--" + f.name.replace("_", "-")
        if types[f.name] is bool:  # a switch: --skip-ig / --no-skip-ig
            parser.add_argument(flag, action=ActionYesNo(no_prefix="no-"), default=f.default, help=f.metadata["help"])
        else:
            parser.add_argument(flag, type=types[f.name], default=f.default, help=f.metadata["help"])
    return parser


def parse_args(argv: list[str]) -> AnalyzeConfig:
    import argparse

    parser = build_parser()
    try:
        namespace = parser.parse_args(argv)
    except argparse.ArgumentError as err:
        text = " ".join(str(err).split())  # jsonargparse spreads one message over several lines
        raise UserError(text) from None
    values = namespace.as_dict()
    return AnalyzeConfig(**{f.name: values[f.name] for f in dataclasses.fields(AnalyzeConfig)})


def _analyses(spec: str) -> list[str]:
    from lit_rcqa.analysis.pipeline import ALL_ANALYSES

    text = spec.strip().lower()
    if text == "all":
        return list(ALL_ANALYSES)
    if text in ("none", ""):
        return []
    chosen = [a.strip() for a in text.split(",") if a.strip()]
    unknown = [a for a in chosen if a not in ALL_ANALYSES]
    if unknown:
        raise UserError(f"unknown analyses {unknown} in --analyses; choose from {', '.join(ALL_ANALYSES)}, all, none")
    return chosen


def ig_settings(cfg: AnalyzeConfig):
    """--method adaptive (and no --steps): every layer to --tolerance; otherwise a fixed rule of --steps points."""
    from lit_rcqa.attribution.integrated_gradients import IGSettings

    adaptive = cfg.method == "adaptive" and cfg.steps is None
    method = "gausslegendre" if cfg.method == "adaptive" else cfg.method
    return IGSettings(steps=50 if cfg.steps is None else cfg.steps, method=method, target=cfg.target,
                      tolerance=cfg.tolerance if adaptive else None, refine_method="adaptive",
                      max_steps=cfg.max_steps, max_batch_tokens=cfg.max_batch_tokens)


def run_analyze(cfg: AnalyzeConfig, *, ig_callbacks: Optional[IGCallbacks] = None) -> int:
    """IG (unless --skip-ig), then the analyses on rank 0. Every mistake is a UserError before files are written.

    `ig_callbacks` build the IG prediction loop's callbacks, the shard writer among them (analyze.py passes
    `callbacks.ig_callbacks`); only --skip-ig runs without them.
    One analyze.py at a time per --out: the folder is locked from the first look at its contents until the
    report is written (`out_dir_lock`); a second one is refused in one line and writes nothing."""
    from lit_rcqa.attribution import store
    from lit_rcqa.attribution.run import (IGOptions, check_out_dir, clean_leftovers, load_model, open_run,
                                          out_dir_lock, run_ig)

    # 1. validate everything cheap first
    settings = ig_settings(cfg)
    for name in ("num_examples", "batch_size", "max_analysis_examples"):
        value = getattr(cfg, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    chosen = _analyses(cfg.analyses)
    run = open_run(cfg.run if cfg.run else runs.latest_complete_run(cfg.runs_root))
    out = Path(cfg.out) if cfg.out else run.run_dir / "analysis"
    check_out_dir(out)  # never write into a folder that is not ours
    model = load_model(run)
    process.read_all_weights(model)
    with contextlib.ExitStack() as held:  # the --out lock, until the report is written
        # 2. IG into shards (every rank), or reuse them
        if cfg.skip_ig:
            if not out.is_dir() or store.read_manifest(out) is None:  # looked at before the lock creates `out`
                raise UserError(f"no IG results in {out}: run without --skip-ig first (or pass the right --out)")
            held.enter_context(out_dir_lock(out))
            store.finished_ids(out)  # every shard intact and computed with the manifest's settings, before any write
            clean_leftovers(out)
            ig = None
        else:
            options = IGOptions(layers=cfg.layers, num_examples=cfg.num_examples, explain=cfg.explain,
                                baseline=cfg.baseline, hidden_examples=cfg.hidden_examples,
                                hidden_dtype=cfg.hidden_dtype, batch_size=cfg.batch_size,
                                accelerator=cfg.accelerator, devices=cfg.devices, strategy=cfg.strategy,
                                progress=cfg.progress)
            ig = run_ig(run, out, settings, options, model=model, callbacks=ig_callbacks, hold=held)
            if not ig.is_global_zero:
                return 0
        resolved = dataclasses.replace(cfg, run=str(run.run_dir), out=str(out))
        process.write_text_atomic(out / "analyze_config.yaml",
                                  build_parser().dump(dataclasses.asdict(resolved), skip_none=False))
        # 3. analyses and report (rank 0)
        summary: dict[str, Any] = {}
        if chosen:
            summary = _run_analyses(resolved, run, out, model, chosen, ig)
        _print_summary(out, ig, summary, chosen)
    return 0


def _run_analyses(cfg: AnalyzeConfig, run, out: Path, model, chosen: list[str], ig) -> dict:
    """The analyses on the stored records; `cfg` is resolved (the run and out folders filled in)."""
    from lit_rcqa.analysis import lineage
    from lit_rcqa.analysis.pipeline import run_analyses
    from lit_rcqa.attribution import store

    manifest = store.read_manifest(out) or {}
    ig_info = manifest.get("ig", {})
    run_info = {"training run": str(run.run_dir), "model": manifest.get("model", {}).get("path", ""),
                "data": {k: v for k, v in manifest.get("data", {}).items() if k != "dev_sha256"},
                "IG": (f"{ig_info.get('method')}, m = {ig_info.get('steps')}" if ig_info.get("tolerance") is None else
                       f"{ig_info.get('refine_method')} to δ ≤ {ig_info.get('tolerance')} per (example, layer), at "
                       f"most {ig_info.get('max_steps')} evaluations")
                      + f", target {ig_info.get('target')}, baseline {ig_info.get('baseline')}",
                "explained span": ig_info.get("explain", ""),
                "explained window": "the window (feature) holding the explained answer, by the run's post-processing"}
    if ig is not None and ig.n_computed:
        run_info["IG speed"] = f"{ig.n_computed / max(ig.seconds, 1e-9):.2f} examples/s ({ig.n_computed} examples)"
    logger, model_ref = lineage.open_tracker(cfg.logger, cfg.wandb_project, dataclasses.asdict(cfg), run.run_dir,
                                             run.name, out, manifest)
    try:
        summary = run_analyses(lambda: process.trimmed(store.iter_records(out)), out, analyses=chosen,
                               hidden=store.load_hidden(out), model=model, max_examples=cfg.max_analysis_examples,
                               run_info=run_info, logger=logger, progress=cfg.progress,
                               total=len(store.finished_ids(out)))
    except BaseException:
        tracking.finish(logger, success=False)  # an interrupted run stays resumable: tracker.json is unfinished
        raise
    summary["tracker"] = lineage.close_tracker(logger, out, run.name, summary, model_ref, manifest)
    return summary


def _print_summary(out: Path, ig, summary: dict, chosen: list[str]) -> None:
    from lit_rcqa.attribution import store

    lines = []
    if ig is not None:
        rate = f", {ig.n_computed / ig.seconds:.2f} examples/s" if ig.n_computed and ig.seconds else ""
        lines.append(f"IG: {ig.n_examples} examples ({ig.n_computed} computed now{rate})")
    completeness = summary.get("completeness") or {}
    medians, unconverged = completeness.get("median"), completeness.get("unconverged")
    pairs = summary.get("n_examples", 0) * len(medians or {})
    if medians is None:  # no analyses ran: read δ from the shards (one compact row per example)
        from lit_rcqa.analysis.completeness import COLUMNS, CompletenessAccumulator

        acc = None
        for record in store.iter_records(out):
            acc = acc or CompletenessAccumulator(list(record.layers))
            acc.add(record)
        if acc is not None:
            stats = acc.summary()
            medians = dict(zip(acc.layers, stats[:, 0].tolist()))
            unconverged = dict(zip(acc.layers, stats[:, COLUMNS.index("unconverged")].tolist()))
            pairs = acc.count * len(acc.layers)
    if medians:
        lines.append("median completeness gap δ per layer: "
                     + ", ".join(f"{k} {v:.2e}" for k, v in medians.items() if v is not None))
    ig_info = (store.read_manifest(out) or {}).get("ig", {})
    if ig_info.get("tolerance") is not None and unconverged is not None:
        missed = int(sum(v for v in unconverged.values() if v is not None))
        lines.append(f"accuracy target δ ≤ {ig_info['tolerance']:g}: " + (
            f"{missed} of {pairs} (example, layer) pairs missed it at the cap of {ig_info.get('max_steps')} "
            "evaluations (flagged in the shards: `converged`; counted in tables/completeness, column unconverged)"
            if missed else "every (example, layer) met it"))
    lines.append(f"shards: {out / store.SCORES_DIR}")
    if chosen:
        lines.append(f"report: {out / 'report.html'}")
    if summary.get("tracker"):  # the W&B run's URL or the command that uploads it; the CSV/TensorBoard folder
        lines.append(f"tracker: {summary['tracker']}")
    print("\n".join("  " + ln for ln in lines), flush=True)


def main(argv: Optional[list[str]] = None, *, ig_callbacks: Optional[IGCallbacks] = None) -> int:
    """analyze.py: parse `argv`, run, exit status. `ig_callbacks`: see `run_analyze` (the root analyze.py
    passes `callbacks.ig_callbacks`)."""
    with process.stop_on_signals(INTERRUPTED) as stop:
        try:
            console.quiet_libraries()
            return run_analyze(parse_args(list(sys.argv[1:] if argv is None else argv)), ig_callbacks=ig_callbacks)
        except UserError as err:
            print(f"analyze.py: error: {err}", file=sys.stderr)
            return 2
        except process.Interrupted:
            pass
        # Out of the except block the traceback is gone; collecting it closes any progress bar it still
        # held, so the line starts on a line of its own.
        gc.collect()
        return stop.report()
