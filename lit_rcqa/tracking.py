"""The experiment tracker: Weights & Biases (offline unless a key or WANDB_MODE asks), CSV or TensorBoard.

The only module that imports `wandb`. Offline W&B runs write under `<run>/wandb/` and send nothing;
`wandb sync <run>/wandb/offline-run-*` uploads them later.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Optional

LoggerKind = Literal["wandb", "csv", "tensorboard", "none"]


def wandb_offline() -> bool:
    """Online only when the user asked: WANDB_MODE=online, or an API key and no explicit offline mode."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("online", "run"):
        return False
    if mode in ("offline", "dryrun", "disabled"):
        return True
    return not os.environ.get("WANDB_API_KEY")


def build_logger(kind: LoggerKind, run_dir: Path, name: str, project: str = "lit_rcqa"):
    """A Lightning logger writing under `run_dir`, or None for `none`."""
    if kind == "none":
        return None
    if kind == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(save_dir=str(run_dir), name="csv", version="")
    if kind == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        from lit_rcqa.paths import require_module

        require_module("tensorboard", "tensorboard", "--run.logger tensorboard")
        return TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="")
    from lightning.pytorch.loggers import WandbLogger

    offline = wandb_offline()
    os.environ.setdefault("WANDB_SILENT", "true")
    # Same id for every rank and for a resumed run: one W&B run per run directory.
    return WandbLogger(name=name, save_dir=str(run_dir), project=project, offline=offline, id=_run_id(name),
                       resume="allow", settings=_wandb_settings(offline))


def _run_id(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:64]


def _wandb_settings(offline: bool):
    import wandb

    # Offline: no version check, no network; the run files stay on disk.
    return wandb.Settings(mode="offline" if offline else "online", x_disable_stats=True, silent=True)


def log_summary(logger, values: dict[str, Any]) -> None:
    """Final numbers of a run: W&B summary, or metrics rows for CSV/TensorBoard."""
    if logger is None:
        return
    numeric = {k: v for k, v in values.items() if isinstance(v, (int, float))}
    if type(logger).__name__ == "WandbLogger":
        logger.experiment.summary.update(values)
    elif numeric:
        logger.log_metrics({f"summary/{k}": v for k, v in numeric.items()})
    logger.save()


def log_figures(logger, figures: dict[str, Any], step: Optional[int] = None) -> None:
    """Matplotlib figures as images (W&B) or TensorBoard figures; the CSV logger keeps only the files."""
    if logger is None or not figures:
        return
    kind = type(logger).__name__
    if kind == "WandbLogger":
        import wandb

        logger.experiment.log({name: wandb.Image(fig) for name, fig in figures.items()})
    elif kind == "TensorBoardLogger":
        for name, fig in figures.items():
            logger.experiment.add_figure(name, fig, global_step=step or 0)


def log_tables(logger, tables: dict[str, tuple[list[str], list[list[Any]]]]) -> None:
    """Tables given as (columns, rows): `wandb.Table`s, or TensorBoard text."""
    if logger is None or not tables:
        return
    kind = type(logger).__name__
    if kind == "WandbLogger":
        for name, (columns, rows) in tables.items():
            logger.log_table(key=name, columns=list(columns), data=[list(r) for r in rows])
    elif kind == "TensorBoardLogger":
        for name, (columns, rows) in tables.items():
            text = "| " + " | ".join(map(str, columns)) + " |\n|" + "---|" * len(columns) + "\n"
            text += "\n".join("| " + " | ".join(map(str, r)) + " |" for r in rows)
            logger.experiment.add_text(name, text)


def log_html(logger, name: str, html: str) -> None:
    if logger is not None and type(logger).__name__ == "WandbLogger":
        import wandb

        logger.experiment.log({name: wandb.Html(html)})


def finish(logger) -> None:
    """Close the tracker run so offline files are complete on disk."""
    if logger is not None and type(logger).__name__ == "WandbLogger":
        import wandb

        logger.finalize("success")
        wandb.finish()
