"""Which analysis explained which model: the tracker run of an analyze.py invocation and what it records.

Each invocation is its own tracker run, except the re-run of an unfinished one with the same settings (it
resumes that run). `<out>/tracker.json` keeps the latest run's id, its settings and whether it finished.
The analysis run's config is the resolved command (no `run: null`), the training run (folder, name, its
tracker run id) and the model artifact (name, digest), and the IG settings from the store's manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping

from lit_rcqa.runs import read_status, write_json_atomic

TRACKER_FILE = "tracker.json"
# What the analysis artifact holds besides the tables and report this invocation wrote: the IG store.
STORE_FILES = ("manifest.json", "scores", "analyze_config.yaml")


def resume_key(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved analyze settings that make a command the same command: all but the progress bar
    (`loop.progress`), so re-running an interrupted command with or without a bar resumes its tracker run."""
    key = {k: v for k, v in settings.items() if k != "progress"}
    if isinstance(key.get("loop"), Mapping):
        key["loop"] = {k: v for k, v in key["loop"].items() if k != "progress"}
    return key


def analysis_run_id(out_dir: Path, settings: Mapping[str, Any], new_id: Callable[[], str]) -> tuple[str, bool]:
    """(tracker run id, whether it resumes): the unfinished previous run's id when the settings are the same."""
    path = Path(out_dir) / TRACKER_FILE
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = {}
    settings = json.loads(json.dumps(dict(settings), default=str))  # as stored: comparable after a round trip
    if previous.get("id") and not previous.get("finished") and previous.get("settings") == settings:
        return previous["id"], True
    run_id = new_id()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"id": run_id, "settings": settings, "finished": False})
    return run_id, False


def mark_finished(out_dir: Path) -> None:
    path = Path(out_dir) / TRACKER_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    write_json_atomic(path, {**record, "finished": True})


def training_tracker(run_dir: Path) -> dict[str, Any]:
    """What train.py recorded in run.json about its tracker run (id, mode, model artifact), or {}."""
    return dict(read_status(run_dir).get("tracker") or {})


def model_lineage(model_ref: Mapping[str, Any], recorded: Mapping[str, Any]) -> dict[str, Any]:
    """The model artifact as the analysis saw it; the digest training recorded too, when the files changed since."""
    lineage = dict(model_ref)
    logged = (recorded.get("model_artifact") or {}).get("digest")
    if logged and lineage.get("digest") and logged != lineage["digest"]:
        lineage["digest_at_training"] = logged
    return lineage


def analysis_config(settings: Mapping[str, Any], run_dir: Path, run_name: str, manifest: Mapping[str, Any],
                    recorded: Mapping[str, Any], model_ref: Mapping[str, Any]) -> dict[str, Any]:
    """The analysis run's config: the resolved flags, the training run, the model artifact, IG settings, data."""
    return {**dict(settings),
            "training_run": {"name": run_name, "dir": str(run_dir), "tracker_id": recorded.get("id"),
                             "tracker_mode": recorded.get("mode")},
            "model_artifact": dict(model_ref),
            "ig": dict(manifest.get("ig") or {}),
            "data": {k: v for k, v in (manifest.get("data") or {}).items()}}


def open_tracker(kind: str, project: str, settings: Mapping[str, Any], out_dir: Path, run_name: str):
    """The analysis's tracker run, grouped with its training run, or None. A W&B run starts in the background
    (see tracking.build_logger): call this before the analyses' pass and `describe_tracker` after it, so that
    wandb's start-up overlaps the pass instead of adding to it."""
    from lit_rcqa import tracking

    run_id = None
    if kind == "wandb":
        run_id, _ = analysis_run_id(out_dir, resume_key(settings), tracking.new_run_id)
    return tracking.build_logger(kind, out_dir, f"{run_name}-analysis", project, group=run_name,
                                 job_type="analysis", run_id=run_id)


def describe_tracker(logger, settings: Mapping[str, Any], run_dir: Path, run_name: str,
                     manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The analysis run's config logged and the model it explained declared; returns the model artifact's name
    and digest as recorded."""
    from lit_rcqa import tracking

    recorded = training_tracker(run_dir)
    model_ref = model_lineage(tracking.use_model_artifact(logger, run_dir, run_name), recorded)
    tracking.log_config(logger, analysis_config(settings, run_dir, run_name, manifest, recorded, model_ref))
    return model_ref


def close_tracker(logger, out_dir: Path, run_name: str, summary: Mapping[str, Any], model_ref: Mapping[str, Any],
                  manifest: Mapping[str, Any]) -> str:
    """The analysis artifact (the IG store, this invocation's tables and report), then the run closed;
    returns where the run is (URL or sync command)."""
    from lit_rcqa import tracking

    written = [f for f in summary.get("files", []) if f.startswith("tables/") or f == "report.html"]
    metadata = {"model_artifact": dict(model_ref), "training_run": run_name, "ig": dict(manifest.get("ig") or {}),
                "examples_analysed": summary.get("n_examples"), "layers": summary.get("layers")}
    tracking.log_analysis_artifact(logger, out_dir, f"analysis-{run_name}", [*STORE_FILES, *written], metadata)
    where = tracking.finish(logger)
    if logger is not None:
        mark_finished(out_dir)
    return where
