"""`python train.py`: the Lightning CLI for fine-tuning (`fit`, the default) and evaluation (`validate`).

Every run writes `runs/<name>/`: config.yaml, checkpoints/, model/ (Hugging Face form), predictions.json,
nbest_predictions.json, metrics.json, the tracker's files, and run.json (status).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from typing_extensions import override

from lit_rcqa import runs, tracking
from lit_rcqa.data.datamodule import QADataModule
from lit_rcqa.errors import UserError
from lit_rcqa.model import QAModule
from lit_rcqa.paths import REPO_ROOT

SUBCOMMANDS = ("fit", "validate")
DEFAULT_CONFIG = REPO_ROOT / "configs" / "default.yaml"


@dataclass
class RunOptions:
    name: Optional[str] = None  # folder under `root`; default: <date>-<time>-<subcommand>
    root: str = "runs"
    logger: tracking.LoggerKind = "wandb"  # wandb (offline unless WANDB_API_KEY/WANDB_MODE), csv, tensorboard, none
    wandb_project: str = "lit_rcqa"
    save_every_n_steps: Optional[int] = None  # also refresh checkpoints/last.ckpt every N steps (resume mid-epoch)


class OneLineErrorParser(LightningArgumentParser):
    """Configuration mistakes end in one line on stderr and exit code 2, not a usage screen."""

    @override
    def error(self, message: str, ex: Optional[Exception] = None):
        lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
        detail = next((ln for ln in reversed(lines) if "Key" in ln or "key" in ln or "Expected" in ln), "")
        text = lines[0] if lines else "invalid arguments"
        if detail and detail not in text:
            text += f" ({detail.lstrip('- ')})"
        print(f"train.py: error: {text}", file=sys.stderr)
        raise SystemExit(2)


class RunConfigSaver(SaveConfigCallback):
    """Saves the resolved config as `<run>/config.yaml` (rank 0) and sends it to the tracker."""

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if trainer.is_global_zero:
            self.parser.save(self.config, Path(trainer.default_root_dir) / "config.yaml", skip_none=False,
                             overwrite=True, multifile=False)
            if trainer.logger is not None:
                trainer.logger.log_hyperparams(self.config.as_dict())


class RCQACLI(LightningCLI):
    run_dir: Path

    @staticmethod
    @override
    def subcommands() -> dict[str, set[str]]:
        # Only what works: Lightning's test/predict have no data here (`python -m lit_rcqa.predict` predicts).
        return {name: skip for name, skip in LightningCLI.subcommands().items() if name in SUBCOMMANDS}

    @override
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_class_arguments(RunOptions, "run")
        parser.link_arguments("model.model_name_or_path", "data.tokenizer_name")

    @override
    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        ckpt = config.get("ckpt_path")
        if ckpt and ckpt not in ("last", "best", "hpc") and not Path(ckpt).is_file():
            raise UserError(f"--ckpt_path: checkpoint not found: {ckpt}")
        config.run.name = runs.run_name(config.run.name, self.subcommand)

    @override
    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        config = self.config[self.subcommand]
        opts = config.run
        # Data first: a data or window-settings error ends in one line before any run folder or banner.
        self.datamodule.setup(self.subcommand)
        resume = bool(config.get("ckpt_path"))
        self.run_dir = runs.open_run(opts.root, opts.name, kind=self.subcommand, resume=resume)
        trainer_config = self._get(self.config_init, "trainer", default={})
        callbacks = list(trainer_config.get("callbacks") or [])
        if self.subcommand == "fit":
            ckpt_dir = str(self.run_dir / "checkpoints")
            callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val/f1", mode="max",
                                             save_top_k=1, save_last=True, auto_insert_metric_name=False))
            if opts.save_every_n_steps:
                callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, save_top_k=0, save_last=True,
                                                 every_n_train_steps=opts.save_every_n_steps))
        kwargs["callbacks"] = callbacks
        kwargs["default_root_dir"] = str(self.run_dir)
        if trainer_config.get("logger") in (None, True):
            self.logger = tracking.build_logger(opts.logger, self.run_dir, opts.name, opts.wandb_project)
            kwargs["logger"] = self.logger if self.logger is not None else False
        else:
            self.logger = trainer_config["logger"]
        return super().instantiate_trainer(**kwargs)

    def after_fit(self) -> None:
        best = self.trainer.checkpoint_callback.best_model_path if self.trainer.checkpoint_callback else ""
        if not best:  # stopped (max_steps) before any validation: the final weights are the result
            best = str(self.run_dir / "checkpoints" / "final.ckpt")
            self.trainer.save_checkpoint(best)
        # Score the best checkpoint once more: it becomes model/, predictions.json and metrics.json.
        self.trainer.validate(self.model, datamodule=self.datamodule, ckpt_path=best or None, verbose=False)
        self._finish(best_checkpoint=best)

    def after_validate(self) -> None:
        self._finish(best_checkpoint=self.config[self.subcommand].get("ckpt_path") or "")

    def _finish(self, best_checkpoint: str) -> None:
        from lit_rcqa.outputs import gather_to_rank_zero, print_summary, write_run_outputs

        module: QAModule = self.model
        predictions, nbest = gather_to_rank_zero(module.last_predictions, module.last_nbest)
        if not self.trainer.is_global_zero:
            return
        metrics = dict(module.last_metrics)
        metrics.update(total=len(predictions), checkpoint=best_checkpoint, data=self.datamodule.source,
                       model=module.hparams.model_name_or_path)
        write_run_outputs(self.run_dir, module.model, self.datamodule.tokenizer, predictions, nbest, metrics,
                          save_model=self.subcommand == "fit")
        tracking.log_summary(self.trainer.logger, {f"final/{k}": v for k, v in metrics.items()})
        tracking.finish(self.trainer.logger)
        runs.set_status(self.run_dir, "complete", metrics={k: metrics[k] for k in ("exact_match", "f1", "total")},
                        checkpoint=best_checkpoint)
        print_summary(self.run_dir, metrics, time.time() - self._started)


def _default_subcommand(argv: list[str]) -> list[str]:
    """`python train.py [flags]` means `fit`; `validate` must be named."""
    if argv and (argv[0] in SUBCOMMANDS or argv[0] in ("-h", "--help")):
        return argv
    return ["fit", *argv]


def main(argv: Optional[list[str]] = None) -> int:
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")  # we pass sys.argv on purpose
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)  # keep stderr for what matters
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-") and argv[0] not in SUBCOMMANDS:  # a subcommand we do not offer
        print(f"train.py: error: unknown subcommand {argv[0]!r} (choose from {', '.join(SUBCOMMANDS)}; "
              "to predict with a trained model: python -m lit_rcqa.predict)", file=sys.stderr)
        return 2
    argv = _default_subcommand(argv)
    default_configs = [str(DEFAULT_CONFIG)] if DEFAULT_CONFIG.exists() else []
    try:
        RCQACLI._started = time.time()
        RCQACLI(
            QAModule, QADataModule, args=argv, parser_class=OneLineErrorParser, save_config_callback=RunConfigSaver,
            trainer_defaults={"use_distributed_sampler": False},
            parser_kwargs={sub: {"default_config_files": default_configs} for sub in SUBCOMMANDS},
            subclass_mode_model=False, subclass_mode_data=False, auto_configure_optimizers=False,
        )
    except UserError as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    finally:
        # A run that started but did not finish is marked failed: never mistaken for a complete one.
        runs.close_runs("failed")
        if "LOCAL_RANK" not in os.environ:
            runs.forget_run_name()
    return 0
