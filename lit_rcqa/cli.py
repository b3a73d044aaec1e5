"""`python train.py`: the Lightning CLI for fine-tuning (`fit`, the default) and evaluation (`validate`).

Every run writes `runs/<name>/`: config.yaml, checkpoints/ (best.ckpt, last.ckpt), model/ (Hugging Face form),
predictions.json, nbest_predictions.json, na_prob.json (SQuAD v2), metrics.json, the tracker's files, and
run.json (status). Everything that can be checked (flags, run name, checkpoint, data files) is checked before
the run folder is made. SIGTERM or Ctrl-C stops at the next batch boundary, saves checkpoints/last.ckpt and
exits with 128 + the signal number.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import sys
import threading
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Protocol, Sequence, runtime_checkable

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities.exceptions import SIGTERMException
from typing_extensions import override

from lit_rcqa import console, runs, tracking
from lit_rcqa.data.datamodule import QADataModule
from lit_rcqa.errors import UserError, parser_error_line
from lit_rcqa.evaluation.postprocess import PostprocessSettings
from lit_rcqa.model import QAModule
from lit_rcqa.paths import REPO_ROOT
from lit_rcqa.process import Interrupted, is_launcher, signal_handlers

SUBCOMMANDS = ("fit", "validate")
DEFAULT_CONFIG = REPO_ROOT / "configs" / "default.yaml"


@dataclass
class RunOptions:
    """Where the run's folder goes and what tracks it.

    Args:
        name: The run folder's name under root, a plain name (default: <date>-<time>-<subcommand>).
        root: Where run folders go (any path).
        logger: Tracker: wandb (offline unless WANDB_API_KEY or WANDB_MODE say otherwise), csv, tensorboard
            or none.
        wandb_project: W&B project of the run.
        save_every_n_steps: Also refresh checkpoints/last.ckpt every N optimizer steps, so that a stopped run
            resumes mid-epoch (null: after each validation only).
    """

    name: Optional[str] = None
    root: str = "runs"
    logger: tracking.LoggerKind = "wandb"
    wandb_project: str = "lit_rcqa"
    save_every_n_steps: Optional[int] = None


class OneLineErrorParser(LightningArgumentParser):
    """Configuration mistakes end in one line on stderr and exit code 2, not a usage screen."""

    @override
    def error(self, message: str, ex: Optional[Exception] = None):
        if not self.exit_on_error:  # a library call (read_run_config): the caller names the file
            raise UserError(parser_error_line(message))
        print(f"train.py: error: {parser_error_line(message)}", file=sys.stderr)
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


def check_checkpoint(path: str) -> None:
    """A file `train.py` may resume or score: a torch zip archive holding only tensors and plain data
    (weights-only), with a Lightning `state_dict`. Anything else is one clear UserError, before any work."""
    import torch

    if not Path(path).is_file():
        raise UserError(f"--ckpt_path: checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        raise UserError(f"--ckpt_path {path}: not a PyTorch checkpoint (expected a file written by torch.save)")
    try:
        # mmap: the tensors are not read, only the record of what the file holds.
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:
        raise UserError(f"--ckpt_path {path}: refused: not a weights-only checkpoint (it holds pickled Python "
                        "objects, and loading them could run code)") from None
    except Exception as err:  # a damaged archive fails in many ways; all mean "cannot read it"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"--ckpt_path {path}: cannot read the checkpoint ({first})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise UserError(f"--ckpt_path {path}: not a Lightning checkpoint (no state_dict)")


def save_training_state(trainer: Trainer, path: str | Path) -> None:
    """Write a checkpoint train.py can resume from: weights plus optimizer, scheduler, loop and callback state.

    Lightning calls that `weights_only=False` (as opposed to weights alone); it is a *save* option, not a pickle
    load. The state is tensors and plain data, so every load (`check_checkpoint`, before Lightning reads the
    file) is `torch.load(weights_only=True)` and refuses anything else."""
    trainer.save_checkpoint(str(path), weights_only=False)


class LastCheckpoint(Callback):
    """`checkpoints/last.ckpt`, the one file `--ckpt_path last` resumes: written after each validation of fit,
    every `every_n_steps` optimizer steps if asked, and at the batch boundary where a stop signal ends training.

    One callback owns the name: two ModelCheckpoints with save_last=True wrote last.ckpt and last-v1.ckpt,
    and Lightning's "last" then picked whichever file was newer.
    """

    def __init__(self, path: Path, every_n_steps: Optional[int] = None):
        self.path, self.every_n_steps = str(path), every_n_steps

    @override
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            save_training_state(trainer, self.path)

    @override
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            save_training_state(trainer, self.path)

    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        # Lightning raises SIGTERMException between two training batches, where the state is consistent.
        # Single process only: under DDP, saving needs every rank at the same barrier; the periodic
        # checkpoint is the resume point there.
        if isinstance(exception, SIGTERMException) and trainer.training and trainer.world_size == 1:
            save_training_state(trainer, self.path)


@runtime_checkable
class Summarizing(Protocol):
    """A callback whose `summary()` numbers (e.g. the mean throughput) go into the tracker's run summary."""

    def summary(self) -> dict[str, float]: ...


class RCQACLI(LightningCLI):
    run_dir: Optional[Path] = None
    current: Optional["RCQACLI"] = None  # the CLI of this process, for the stop-signal line in main()

    def __init__(self, *args: Any, monitors: Sequence[Callback] = (), **kwargs: Any) -> None:
        # Set before LightningCLI.__init__, which parses, instantiates and runs the subcommand.
        self.monitors = list(monitors)
        super().__init__(*args, **kwargs)

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
    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        # Checked right after parsing: Lightning reads hyperparameters from --ckpt_path before any other hook.
        super().parse_arguments(parser, args)
        RCQACLI.current = self
        self.subcommand = self.config["subcommand"]
        config = self.config[self.subcommand]
        config.run.name = runs.run_name(config.run.name, self.subcommand)
        runs.check_run_name(config.run.name)
        ckpt = config.get("ckpt_path")
        if ckpt == "last":  # this run's own last.ckpt, never a guess among several files
            last = Path(config.run.root) / config.run.name / "checkpoints" / "last.ckpt"
            if not last.is_file():
                raise UserError(f"--ckpt_path last: nothing to resume: {last} does not exist")
            ckpt = config.ckpt_path = str(last)
        if ckpt and ckpt not in ("best", "hpc"):
            check_checkpoint(ckpt)

    @override
    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        config = self.config[self.subcommand]
        opts = config.run
        # Read and validate the data before the run folder exists: a rejected file (or window settings that
        # leave no room for the stride) ends in one line and leaves nothing behind.
        self.datamodule.setup("fit" if self.subcommand == "fit" else "validate")
        resume = bool(config.get("ckpt_path"))
        self.run_dir = runs.open_run(opts.root, opts.name, kind=self.subcommand, resume=resume,
                                     notify=lambda line: print(f"train.py: {line}", file=sys.stderr, flush=True))
        if is_launcher():
            print_skipped(self.datamodule.load_report)
        trainer_config = self._get(self.config_init, "trainer", default={})
        callbacks = list(trainer_config.get("callbacks") or [])
        if self.subcommand == "fit":
            ckpt_dir = self.run_dir / "checkpoints"
            callbacks.append(ModelCheckpoint(dirpath=str(ckpt_dir), filename="best", monitor="val/f1", mode="max",
                                             save_top_k=1, save_last=False, auto_insert_metric_name=False))
            callbacks.append(LastCheckpoint(ckpt_dir / "last.ckpt", opts.save_every_n_steps))
        kwargs["callbacks"] = callbacks
        kwargs["default_root_dir"] = str(self.run_dir)
        if trainer_config.get("logger") in (None, True):
            job_type = "train" if self.subcommand == "fit" else "validate"
            self.logger = tracking.build_logger(opts.logger, self.run_dir, opts.name, opts.wandb_project,
                                                group=opts.name, job_type=job_type)
            kwargs["logger"] = self.logger if self.logger is not None else False
        else:
            self.logger = trainer_config["logger"]
        if self.subcommand == "fit" and self.logger:  # they only log: with no tracker they have nowhere to write
            callbacks += self.monitors
        trainer = super().instantiate_trainer(**kwargs)
        counts = skipped_counts(self.datamodule.load_report)
        if counts and trainer.is_global_zero:
            tracking.log_summary(trainer.logger, counts)
        return trainer

    def after_fit(self) -> None:
        best = self.trainer.checkpoint_callback.best_model_path if self.trainer.checkpoint_callback else ""
        if not best:  # stopped (max_steps) before any validation: the final weights are the result
            best = str(self.run_dir / "checkpoints" / "final.ckpt")
            save_training_state(self.trainer, best)
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
                       model=module.hparams.model_name_or_path, skipped=self.datamodule.load_report)
        write_run_outputs(self.run_dir, module.model, self.datamodule.tokenizer, predictions, nbest, metrics,
                          save_model=self.subcommand == "fit", version_2=module.hparams.version_2_with_negative)
        summary = {k: v for c in self.trainer.callbacks if isinstance(c, Summarizing) for k, v in c.summary().items()}
        tracker = tracking.close_training_run(self.trainer.logger, self.run_dir, self.config[self.subcommand].run.name,
                                              metrics, summary, log_model=self.subcommand == "fit")
        runs.set_status(self.run_dir, "complete", metrics={k: metrics[k] for k in ("exact_match", "f1", "total")},
                        checkpoint=best_checkpoint, tracker=tracker)
        runs.release(self.run_dir)
        print_summary(self.run_dir, metrics, time.time() - self._started, tracker=tracker.get("location", ""))


def skipped_counts(report: dict[str, dict[str, int]]) -> dict[str, int]:
    """Records left out of each split, by reason, as flat tracker keys: `data/skipped/train/no_answer`."""
    return {f"data/skipped/{split}/{reason}": n for split, counts in report.items() for reason, n in counts.items()}


def print_skipped(report: dict[str, dict[str, int]]) -> None:
    """One stderr line per split that lost records: how many, and why."""
    for split, counts in report.items():
        if counts:
            reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items()))
            print(f"train.py: {split} data: left out {sum(counts.values())} question(s): {reasons}",
                  file=sys.stderr, flush=True)


# --- the process: stop signals ----------------------------------------------------------------------
@dataclass
class Stop:
    signum: Optional[int] = None
    forwarding: bool = False


@contextlib.contextmanager
def stop_on_signals(signums=(signal.SIGTERM, signal.SIGINT)) -> Iterator[Stop]:
    """SIGTERM and SIGINT stop the run cleanly; a second signal exits at once.

    Inside a trainer loop Lightning has its own SIGTERM handler, which sets `trainer.received_sigterm` (the
    loops then stop at the next batch boundary) and then calls the handler it found: this one. There a signal
    is only recorded, and SIGINT is passed to Lightning's handler as a SIGTERM, so Ctrl-C stops as cleanly.
    Outside a loop (loading, writing outputs) the handler raises `Interrupted` at once.
    """
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():  # handlers can only be set there
        yield stop
        return

    def handler(signum, frame):
        if stop.forwarding:  # our own SIGINT -> SIGTERM hand-over coming back through Lightning's handler
            return
        if stop.signum is not None:  # the clean stop after the first signal takes too long: leave now
            os._exit(128 + stop.signum)
        stop.signum = signum
        installed = signal.getsignal(signal.SIGTERM)
        if installed is handler:  # no trainer loop is running
            raise Interrupted(signum)
        if signum != signal.SIGTERM and callable(installed):
            stop.forwarding = True
            try:
                installed(signal.SIGTERM, frame)
            finally:
                stop.forwarding = False

    with signal_handlers(signums, handler):  # a signal ignored from the start stays ignored
        yield stop


def interrupted_line(signum: int, run_dir: Optional[Path], subcommand: str) -> str:
    name = signal.Signals(signum).name
    if subcommand != "fit":
        return f"train.py: interrupted by {name}; run the same command again"
    if run_dir is not None and (run_dir / "checkpoints" / "last.ckpt").is_file():
        return f"train.py: interrupted by {name}; resume with --ckpt_path last"
    return f"train.py: interrupted by {name} before any checkpoint was saved; run the same command again"


def _default_subcommand(argv: list[str]) -> list[str]:
    """`python train.py [flags]` means `fit`; `validate` must be named."""
    if argv and (argv[0] in SUBCOMMANDS or argv[0] in ("-h", "--help")):
        return argv
    return ["fit", *argv]


def cli_options(*, default_configs: bool = True, exit_on_error: bool = True) -> dict[str, Any]:
    """RCQACLI's arguments besides the classes: the one place that says how `python train.py` parses."""
    parser_kwargs = {"exit_on_error": exit_on_error}
    files = [str(DEFAULT_CONFIG)] if default_configs and DEFAULT_CONFIG.exists() else []
    return dict(parser_class=OneLineErrorParser, save_config_callback=RunConfigSaver,
                trainer_defaults={"use_distributed_sampler": False},
                parser_kwargs={**parser_kwargs, **{sub: {**parser_kwargs, "default_config_files": files}
                                                   for sub in SUBCOMMANDS}},
                subclass_mode_model=False, subclass_mode_data=False, auto_configure_optimizers=False)


class _Built(Exception):
    def __init__(self, parser: LightningArgumentParser):
        self.parser = parser


class _ParserOnly(RCQACLI):
    """RCQACLI stopped as soon as its parser exists: nothing is parsed, instantiated or run."""

    @override
    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        raise _Built(parser)


def build_parser(*, default_configs: bool = True, exit_on_error: bool = True) -> LightningArgumentParser:
    """The parser of `python train.py` (subcommands fit and validate), built exactly as RCQACLI builds it."""
    try:
        _ParserOnly(QAModule, QADataModule, args=[], **cli_options(default_configs=default_configs,
                                                                    exit_on_error=exit_on_error))
    except _Built as built:
        return built.parser
    raise AssertionError("unreachable: LightningCLI parses right after building its parser")


def read_run_config(run_dir: str | Path) -> tuple[dict[str, Any], PostprocessSettings]:
    """A training run's data settings (QADataModule's keyword arguments) and post-processing, from its
    config.yaml read by the parser that wrote it: types are checked, and a key the file lacks (written by an
    older version) gets the default of today's signature, not configs/default.yaml's. A file the parser
    rejects (unknown key, bad value) is one UserError naming the file and the key."""
    import yaml

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise UserError(f"{path}: not found (a run folder written by train.py has its config.yaml)")
    try:  # the parser would take a YAML error for a path that does not exist: say what it is
        yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise UserError(f"{path}: cannot read it as YAML ({' '.join(str(err).split())})") from None
    kind = runs.read_status(path.parent).get("kind")
    subcommand = kind if kind in SUBCOMMANDS else "fit"
    parser = build_parser(default_configs=False, exit_on_error=False)
    try:
        config = parser.parse_args([subcommand, "--config", str(path)])[subcommand]
    except UserError as err:  # `--model.x: why` from the parser: in a file the key is `model.x`
        raise UserError(f"{path}: {str(err).removeprefix('--')}") from None
    model = config.model
    post = PostprocessSettings(n_best=model.n_best, max_answer_length=model.max_answer_length,
                               version_2=model.version_2_with_negative, null_threshold=model.null_threshold)
    return config.data.as_dict(), post


def main(argv: Optional[list[str]] = None, *, monitors: Sequence[Callback] = ()) -> int:
    """`python train.py ARGV`; the exit status. `monitors`: callbacks that only log (learning rate,
    throughput), added to fit runs that have a tracker; train.py passes the app's (callbacks/train_monitors)."""
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")  # we pass sys.argv on purpose
    console.quiet_libraries()
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)  # keep stderr for what matters
    logging.getLogger("lightning.pytorch.trainer.connectors.signal_connector").setLevel(logging.WARNING)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-") and argv[0] not in SUBCOMMANDS:  # a subcommand we do not offer
        print(f"train.py: error: unknown subcommand {argv[0]!r} (choose from {', '.join(SUBCOMMANDS)}; "
              "to predict with a trained model: python -m lit_rcqa.predict)", file=sys.stderr)
        return 2
    argv = _default_subcommand(argv)
    unfinished = "failed"  # the status of a run that started but did not finish: never mistaken for complete
    with stop_on_signals() as stop:
        try:
            RCQACLI._started = time.time()
            RCQACLI(QAModule, QADataModule, args=argv, monitors=monitors, **cli_options())
        except UserError as err:
            print(f"train.py: error: {err}", file=sys.stderr)
            return 2
        except (Interrupted, SIGTERMException):
            unfinished = "interrupted"
            signum = stop.signum or signal.SIGTERM  # Lightning's handler runs even where SIGTERM was ignored
            if is_launcher():
                cli = RCQACLI.current
                print(interrupted_line(signum, cli.run_dir if cli else None, cli.subcommand if cli else argv[0]),
                      file=sys.stderr, flush=True)
            return 128 + signum
        finally:
            runs.close_runs(unfinished)
            RCQACLI.current = None
            if "LOCAL_RANK" not in os.environ:
                runs.forget_run_name()
    return 0
