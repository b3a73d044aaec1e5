"""`python analyze.py`: layer-wise IG over a training run's dev split, then every analysis.

    python analyze.py --layers all                         # latest complete run in runs/, 200 dev questions
    python analyze.py --config configs/analyze.yaml --ig.tolerance 0.005   # the file, one setting changed
    python analyze.py --run runs/NAME --ig.layers 0,3,6 --loop.num_examples 1000 --ig.steps 50
    python analyze.py --skip-ig --analysis.analyses jsd,roles   # reuse the shards, rerun two analyses
    python analyze.py --loop.devices 2 --loop.strategy ddp      # ranks write their own shards

The settings are one typed tree (`lit_rcqa.analyze_config`: groups ig, loop, analysis); the flat flags of
earlier versions (`--num-examples`, `--steps`, `--analyses`, ...) still work as aliases.
Outputs under `out` (default `<run>/analysis`): manifest.json and scores/ (the IG shards, read with
`lit_rcqa.attribution.store`), figures/, tables/, report.html, analyze_config.yaml (this command's
resolved settings, which `--config` reads back) and the tracker's files. `out` must be new, empty or an
analysis folder written here, and one analyze.py at a time works in it (a second one on the same folder is
refused in one line).
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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from lit_rcqa import analyze_config, console, process, runs, tracking
from lit_rcqa.analyze_config import AnalyzeConfig
from lit_rcqa.errors import UserError

if TYPE_CHECKING:
    from lit_rcqa.attribution.run import IGCallbacks

# The stderr line of a stop signal (`process.stop_on_signals`).
INTERRUPTED = "analyze.py: interrupted by {signal}; finished shards are kept, re-run the same command to resume"


def run_analyze(cfg: AnalyzeConfig, *, ig_callbacks: Optional[IGCallbacks] = None) -> int:
    """IG (unless --skip-ig), then the analyses on rank 0. Every mistake is a UserError before files are written.

    `ig_callbacks` build the IG prediction loop's callbacks, the shard writer among them (analyze.py passes
    `callbacks.ig_callbacks`); only --skip-ig runs without them.
    One analyze.py at a time per --out: the folder is locked from the first look at its contents until the
    report is written (`out_dir_lock`); a second one is refused in one line and writes nothing."""
    from lit_rcqa.attribution import store
    from lit_rcqa.attribution.run import check_out_dir, clean_leftovers, load_model, open_run, out_dir_lock, run_ig

    # 1. validate everything cheap first (the types when parsing; the rules and analyses by their registries)
    settings = analyze_config.ig_settings(cfg)
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
            ig = run_ig(run, out, settings, analyze_config.ig_options(cfg), model=model, callbacks=ig_callbacks,
                        hold=held)
            if not ig.is_global_zero:
                return 0
        resolved = dataclasses.replace(cfg, run=str(run.run_dir), out=str(out))
        process.write_text_atomic(out / "analyze_config.yaml", analyze_config.resolved_yaml(resolved))
        # 3. analyses and report (rank 0)
        analyses = analyze_config.analysis_kwargs(resolved)
        summary: dict[str, Any] = {}
        if analyses["analyses"]:
            summary = _run_analyses(resolved, run, out, model, ig, analyses)
        _print_summary(out, ig, summary, analyses["analyses"])
    return 0


def _run_analyses(cfg: AnalyzeConfig, run, out: Path, model, ig, analyses: dict[str, Any]) -> dict:
    """The analyses on the stored records; `cfg` is resolved (the run and out folders filled in), `analyses`
    its `run_analyses` keyword arguments."""
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
    # The tracker's config: the resolved tree as saved in analyze_config.yaml; lineage adds the training run,
    # the model artifact and the manifest's IG settings and data (what the shards were computed with).
    settings = analyze_config.as_tree(cfg)
    logger = lineage.open_tracker(cfg.logger, cfg.wandb_project, settings, out, run.name)
    try:
        summary = run_analyses(lambda: process.trimmed(store.iter_records(out)), out, **analyses,
                               postprocess=run.postprocess,
                               hidden=store.load_hidden(out), model=model, run_info=run_info, logger=logger,
                               total=len(store.finished_ids(out)))
        model_ref = lineage.describe_tracker(logger, settings, run.run_dir, run.name, manifest)
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
            cfg = analyze_config.parse(list(sys.argv[1:] if argv is None else argv))
            return run_analyze(cfg, ig_callbacks=ig_callbacks)
        except UserError as err:
            print(f"analyze.py: error: {err}", file=sys.stderr)
            return 2
        except process.Interrupted:
            pass
        # Out of the except block the traceback is gone; collecting it closes any progress bar it still
        # held, so the line starts on a line of its own.
        gc.collect()
        return stop.report()
