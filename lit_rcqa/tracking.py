"""The experiment tracker: Weights & Biases (online when wandb has credentials, else offline), CSV or TensorBoard.

The only module that calls `wandb` (`offline_run` reads its offline files). W&B goes online exactly when
wandb itself would authenticate without asking: an API key from `wandb login` (netrc), WANDB_API_KEY or an
identity token; WANDB_MODE and the `wandb offline` setting win. Otherwise runs are offline: no network, no
prompt, files under `<dir>/wandb/`, and `wandb sync <dir>/wandb/offline-run-*` uploads them later
(`location()` gives the exact command).
"""

from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Optional, Sequence

LoggerKind = Literal["wandb", "csv", "tensorboard", "none"]
WandbMode = Literal["online", "offline"]
MODEL_ARTIFACT_TYPE = "model"
ANALYSIS_ARTIFACT_TYPE = "analysis"


# --- online or offline ----------------------------------------------------------------------------------
def _wandb_settings_from_environment():
    """wandb's settings as `wandb.init` would read them (settings files, then WANDB_* variables), read afresh:
    wandb's process-wide copy is loaded once and would miss a later `wandb login` or a changed HOME."""
    import wandb

    settings = wandb.Settings()
    config_dir = os.environ.get("WANDB_CONFIG_DIR")
    settings.settings_system = str(Path(config_dir).expanduser() / "settings") if config_dir \
        else str(Path("~", ".config", "wandb", "settings").expanduser())
    settings.update_from_system_settings()
    settings.update_from_env_vars(dict(os.environ))
    return settings


def wandb_has_credentials(base_url: str) -> bool:
    """Whether wandb would find credentials for `base_url` without prompting and without the network:
    WANDB_API_KEY, WANDB_IDENTITY_TOKEN_FILE, a netrc entry for the host (what `wandb login` writes)."""
    from wandb.errors import AuthenticationError

    try:
        from wandb.sdk.lib import wbauth
    except ImportError:  # a wandb without this module: the two sources every version reads
        return bool(os.environ.get("WANDB_API_KEY")) or _netrc_has(base_url)
    try:
        # prompt=False: never ask; update_session=False: only look; verify=False: no request to the server.
        auth = wbauth.authenticate_session(host=base_url, source="lit_rcqa", prompt=False, update_session=False,
                                           verify=False)
    except AuthenticationError as err:
        print(f"W&B credentials for {base_url} are malformed ({err}); logging offline", file=sys.stderr)
        return False
    return auth is not None


def _netrc_has(base_url: str) -> bool:
    import netrc
    from urllib.parse import urlsplit

    try:
        path = os.environ.get("NETRC") or None
        return netrc.netrc(path).authenticators(urlsplit(base_url).netloc) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_mode() -> WandbMode:
    """`offline` when WANDB_MODE or `wandb offline` says so or no credentials exist; `online` otherwise."""
    env_mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if env_mode in ("online", "run"):
        return "online"  # asked for explicitly: wandb reports missing credentials itself
    settings = _wandb_settings_from_environment()
    if env_mode in ("offline", "dryrun", "disabled") or settings.mode in ("offline", "dryrun", "disabled"):
        return "offline"
    return "online" if wandb_has_credentials(settings.base_url) else "offline"


def wandb_offline() -> bool:
    return wandb_mode() == "offline"


# --- loggers ----------------------------------------------------------------------------------------------
def build_logger(kind: LoggerKind, run_dir: Path, name: str, project: str = "lit_rcqa", *,
                 group: Optional[str] = None, job_type: Optional[str] = None, run_id: Optional[str] = None):
    """A Lightning logger writing under `run_dir`, or None for `none`.

    W&B: one run per `run_id` (default: the run name, so a resumed training run continues its W&B run),
    grouped by `group` (the training run's name) with `job_type` train / analysis.
    """
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
    import wandb

    mode = wandb_mode()
    # No banner, no hints: the command prints the run's URL or sync command itself when it ends.
    # System metrics stay on (WANDB__DISABLE_STATS=true turns them off, as for any wandb run).
    # wandb's own list of every installed package (requirements.txt) is most of a run's start-up time (0.3-1 s);
    # the versions that decide the results go into the run's config instead (`package_versions`).
    settings = wandb.Settings(mode=mode, silent=True, x_save_requirements=False)
    _skip_unstaged_launch_inputs()
    logger = _EarlyWandbLogger(name=name, save_dir=str(run_dir), project=project, offline=mode == "offline",
                               id=run_id or safe_name(name), resume="allow", group=group, job_type=job_type,
                               settings=settings, config={"versions": package_versions()})
    # Lightning always passes `anonymous`, which wandb 0.31 only answers with a deprecation warning.
    getattr(logger, "_wandb_init", {}).pop("anonymous", None)
    logger.start()
    return logger


LAUNCH_INPUTS = "wandb.sdk.launch.inputs.internal"


@functools.cache
def _skip_unstaged_launch_inputs() -> None:
    """Spare wandb.init an import that costs 1.25 s on 2 cores once torch, lightning and transformers are loaded.

    wandb 0.31's `Run._on_ready` imports W&B Launch's input module only to apply the launch inputs staged in
    this process. Staging them means importing that module first, so when it is not imported nothing is
    staged and there is nothing to apply; the import itself pulls in wandb's public API, whose pydantic
    models read docstrings through `inspect.getmodule`, a scan of every loaded module per class. The method
    is wrapped to apply staged inputs exactly as before whenever the module is loaded.
    """
    try:
        from wandb.sdk.wandb_run import Run
    except ImportError:
        return
    apply_inputs = getattr(Run, "_detect_and_apply_job_inputs", None)
    if apply_inputs is None:  # another wandb: leave it as it is
        return

    @functools.wraps(apply_inputs)
    def apply_staged_inputs(self) -> None:
        if LAUNCH_INPUTS in sys.modules:
            apply_inputs(self)

    Run._detect_and_apply_job_inputs = apply_staged_inputs


@functools.cache
def _early_wandb_logger_class():
    """WandbLogger whose run starts in a background thread as soon as it is built.

    Starting a W&B run costs 0.5-2.5 s on 2 cores even offline (wandb's service process, the run's files, the
    installed-package list it records): started at build time, that overlaps with loading the model and the
    data, and the first use of `experiment` only waits for what is left (bench/bench_tracking.py measures it).
    """
    import threading

    from lightning.pytorch.loggers import WandbLogger
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    class EarlyWandbLogger(WandbLogger):
        _starting: Optional[threading.Thread] = None
        _start_error: Optional[BaseException] = None

        def start(self) -> None:
            if rank_zero_only.rank != 0 or self._starting is not None:
                return  # other ranks never open the run (Lightning gives them a dummy experiment)

            def open_run():
                try:
                    WandbLogger.experiment.fget(self)
                except BaseException as err:  # re-raised where the run is first used
                    self._start_error = err

            self._starting = threading.Thread(target=open_run, name="wandb-start", daemon=True)
            self._starting.start()

        def _wait(self) -> None:
            starting, self._starting = self._starting, None
            if starting is not None:
                starting.join()
            error, self._start_error = self._start_error, None
            if error is not None:
                raise error

        @property
        def experiment(self):
            self._wait()
            return super().experiment

        def __getstate__(self):
            self._wait()
            return super().__getstate__()

    return EarlyWandbLogger


def _EarlyWandbLogger(**kwargs):
    return _early_wandb_logger_class()(**kwargs)


VERSIONED = ("lit-rcqa", "torch", "transformers", "tokenizers", "lightning", "torchmetrics", "wandb", "numpy",
             "captum")


def package_versions() -> dict[str, str]:
    """{package: version} of what decides a run's results (installed ones only), for the tracker's config."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def safe_name(name: str) -> str:
    """A W&B run id or artifact name: letters, digits, '-', '_' and '.' only."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name)[:64]


def new_run_id() -> str:
    """A fresh W&B run id: 8 random lowercase letters and digits, as wandb makes them."""
    import secrets
    import string

    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


KNOWN_LOGGERS = ("WandbLogger", "TensorBoardLogger", "CSVLogger")


def logger_kind(logger) -> str:
    """The Lightning logger class a logger is (our W&B logger subclasses `WandbLogger`), or ""."""
    if logger is None:
        return ""
    return next((cls.__name__ for cls in type(logger).__mro__ if cls.__name__ in KNOWN_LOGGERS),
                type(logger).__name__)


def _is_wandb(logger) -> bool:
    return logger_kind(logger) == "WandbLogger"


def _run(logger):
    return logger.experiment if _is_wandb(logger) else None


def run_info(logger) -> dict[str, Any]:
    """Where this run's tracker data is: kind, W&B id and mode, and `location()`."""
    if logger is None:
        return {}
    info: dict[str, Any] = {"kind": type(logger).__name__.replace("Logger", "").lower()}
    run = _run(logger)
    if run is not None:
        info.update(id=run.id, mode="offline" if run.offline else "online", project=run.project)
    info["location"] = location(logger)
    return info


def location(logger) -> str:
    """The run's URL (W&B online), the command that uploads it (offline), or the folder (CSV, TensorBoard)."""
    if logger is None:
        return ""
    run = _run(logger)
    if run is not None:
        if not run.offline and run.url:
            return run.url
        return f"wandb sync {_relative(Path(run.settings.sync_dir))}"
    kind = type(logger).__name__
    if kind == "TensorBoardLogger":
        return f"tensorboard --logdir {_relative(Path(logger.log_dir))}"
    return str(_relative(Path(getattr(logger, "log_dir", "") or "")))


def _relative(path: Path) -> Path:
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def log_config(logger, config: Mapping[str, Any]) -> None:
    if logger is not None:
        logger.log_hyperparams(dict(config))


def log_summary(logger, values: dict[str, Any]) -> None:
    """Final numbers of a run: W&B summary, or metrics rows for CSV/TensorBoard."""
    if logger is None:
        return
    numeric = {k: v for k, v in values.items() if isinstance(v, (int, float))}
    if _is_wandb(logger):
        logger.experiment.summary.update(values)
    elif numeric:
        logger.log_metrics({f"summary/{k}": v for k, v in numeric.items()})
    logger.save()


def _markdown_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    text = "| " + " | ".join(map(str, columns)) + " |\n|" + "---|" * len(columns) + "\n"
    return text + "\n".join("| " + " | ".join(map(str, r)) + " |" for r in rows)


FLUSH_SECONDS = 60.0


def finish(logger, success: bool = True) -> str:
    """Close the tracker run so offline files are complete on disk; returns its `location()`."""
    if logger is None:
        return ""
    where = location(logger)
    if _is_wandb(logger):
        import wandb

        from lit_rcqa import offline_run

        run = _run(logger)
        offline = bool(getattr(run, "offline", False))
        sync_dir = Path(run.settings.sync_dir) if offline else None
        logger.finalize("success" if success else "failed")
        wandb.finish(exit_code=0 if success else 1)
        # wandb.finish returns before wandb's service has written the last records of an offline run.
        if sync_dir is not None and not offline_run.wait_complete(sync_dir, timeout=FLUSH_SECONDS):
            print(f"W&B: the offline run in {_relative(sync_dir)} was not complete on disk after {FLUSH_SECONDS:.0f} s"
                  " (wandb's service is still writing it); wait before `wandb sync`", file=sys.stderr)
    else:
        logger.save()
    return where


# --- artifacts: which model an analysis explained ------------------------------------------------------
def _artifact(name: str, type_: str, root: Path, files: Iterable[str], metadata: Mapping[str, Any]):
    """A W&B artifact of `root/<file>` for each relative path, referenced in place (no copy): its digest is
    wandb's own (the manifest's), computed locally."""
    import wandb

    artifact = wandb.Artifact(safe_name(name), type=type_, metadata=dict(metadata))
    for rel in sorted(files):
        # "immutable": wandb neither copies nor re-reads the file before upload (a model can be GBs).
        # An absolute path: `wandb sync` of an offline run reads the files from there, from any folder.
        artifact.add_file(str((root / rel).resolve()), name=rel, policy="immutable")
    return artifact


def _files_under(root: Path, rels: Iterable[str]) -> list[str]:
    """The relative paths of the given files and of every file under the given folders that exist."""
    found = []
    for rel in rels:
        path = root / rel
        if path.is_dir():
            found += [p.relative_to(root).as_posix() for p in sorted(path.rglob("*"))
                      if p.is_file() and not p.name.startswith(".")]
        elif path.is_file():
            found.append(rel)
    return found


MODEL_FILES = ("model", "metrics.json", "predictions.json", "nbest_predictions.json", "na_prob.json",
               "config.yaml")


def model_artifact_name(run_name: str) -> str:
    return safe_name(f"model-{run_name}")


def model_reference(run_dir: Path, run_name: str) -> dict[str, str]:
    """The name and digest of the training run's `model` artifact, computed from the files as they are now."""
    artifact = _artifact(model_artifact_name(run_name), MODEL_ARTIFACT_TYPE, Path(run_dir),
                         _files_under(Path(run_dir), MODEL_FILES), {})
    return {"name": artifact.name, "type": MODEL_ARTIFACT_TYPE, "digest": artifact.digest}


def log_model_artifact(logger, run_dir: Path, run_name: str, metadata: Mapping[str, Any]) -> dict[str, str]:
    """W&B: the saved model folder, metrics.json and the predictions as a versioned `model` artifact.
    Returns its name and digest (empty for other trackers)."""
    if not _is_wandb(logger):
        return {}
    run_dir = Path(run_dir)
    artifact = _artifact(model_artifact_name(run_name), MODEL_ARTIFACT_TYPE, run_dir,
                         _files_under(run_dir, MODEL_FILES), metadata)
    logger.experiment.log_artifact(artifact, aliases=["latest"])
    return {"name": artifact.name, "type": MODEL_ARTIFACT_TYPE, "digest": artifact.digest}


def close_training_run(logger, run_dir: Path, run_name: str, metrics: Mapping[str, Any],
                       extra_summary: Mapping[str, Any] | None = None, *, log_model: bool) -> dict[str, Any]:
    """The end of a train.py run on the tracker: final numbers into the summary, the `model` artifact (fit),
    the run closed. Returns what run.json keeps about it: kind, id, mode, location, model artifact."""
    if logger is None:
        return {}
    log_summary(logger, {**{f"final/{k}": v for k, v in metrics.items()}, **dict(extra_summary or {})})
    info = run_info(logger)
    if log_model:
        keep = {k: metrics[k] for k in ("exact_match", "f1", "total", "data", "model") if k in metrics}
        artifact = log_model_artifact(logger, run_dir, run_name, keep)
        if artifact:
            info["model_artifact"] = artifact
    finish(logger)
    return info


def use_model_artifact(logger, run_dir: Path, run_name: str) -> dict[str, Any]:
    """Declare the explained model as this run's input. Online, `use_artifact` (built from the files: the
    same digest resolves to the version training logged). Offline, W&B refuses `use_artifact`; the name and
    digest are returned for the caller to record in the run's config and in its artifact's metadata."""
    if not _is_wandb(logger):
        return {}
    run = logger.experiment
    if run.offline:
        return model_reference(run_dir, run_name)
    artifact = _artifact(model_artifact_name(run_name), MODEL_ARTIFACT_TYPE, Path(run_dir),
                         _files_under(Path(run_dir), MODEL_FILES), {})
    run.use_artifact(artifact)
    return {"name": artifact.name, "type": MODEL_ARTIFACT_TYPE, "digest": artifact.digest}


def log_analysis_artifact(logger, out_dir: Path, name: str, files: Iterable[str],
                          metadata: Mapping[str, Any]) -> dict[str, str]:
    """W&B: the IG store (manifest and shards), the tables and the report as one `analysis` artifact."""
    if not _is_wandb(logger):
        return {}
    out_dir = Path(out_dir)
    artifact = _artifact(name, ANALYSIS_ARTIFACT_TYPE, out_dir, _files_under(out_dir, files), metadata)
    logger.experiment.log_artifact(artifact, aliases=["latest"])
    return {"name": artifact.name, "type": ANALYSIS_ARTIFACT_TYPE, "digest": artifact.digest}


# --- the analysis dashboard ------------------------------------------------------------------------------
class Dashboard:
    """What an analysis shows on the tracker: images, pages, tables and layer-series plots.

    W&B's media slider walks a key's steps, and steps may only grow within a run. So a per-layer item is
    kept until `flush()`, which logs one step per layer (layer i at the run's i-th step from here, with
    `<prefix>/layer_index` = i), everything else with the first of them. TensorBoard gets the same
    content at once: images and pages stepped by layer index, layer series as scalars, tables as text.
    The CSV logger gets nothing here: the analysis's CSV tables are its tables.
    """

    def __init__(self, logger, layers: Sequence[str], prefix: str = "analysis"):
        self.logger = logger
        self.layers = list(layers)
        self.prefix = prefix
        self.kind = logger_kind(logger)
        self._per_layer: list[dict[str, Any]] = [{} for _ in self.layers]
        self._once: dict[str, Any] = {}

    def _put(self, key: str, value: Any, layer: Optional[str]) -> None:
        target = self._once if layer is None else self._per_layer[self.layers.index(layer)]
        if key in target or (layer is None and any(key in frames for frames in self._per_layer)) \
                or (layer is not None and key in self._once):
            raise ValueError(f"tracker key {key!r} is used twice")  # one would silently replace the other
        target[key] = value

    def image(self, key: str, path: Path, layer: Optional[str] = None, caption: str = "") -> None:
        """A PNG file; with `layer`, one frame of `key`'s layer slider."""
        if self.kind == "WandbLogger":
            import wandb

            self._put(key, wandb.Image(str(path), caption=caption or None), layer)
        elif self.kind == "TensorBoardLogger":
            import matplotlib.image

            pixels = matplotlib.image.imread(str(path))  # [H, W, 3|4] float in 0..1
            step = self.layers.index(layer) if layer is not None else 0
            self.logger.experiment.add_image(key, pixels[..., :3], global_step=step, dataformats="HWC")

    def html(self, key: str, text: str, layer: Optional[str] = None) -> None:
        if self.kind == "WandbLogger":
            import wandb

            self._put(key, wandb.Html(text, inject=False), layer)
        elif self.kind == "TensorBoardLogger":
            step = self.layers.index(layer) if layer is not None else 0
            self.logger.experiment.add_text(key, text, global_step=step)

    def table(self, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if self.kind == "WandbLogger":
            import wandb

            self._put(key, wandb.Table(columns=list(columns), data=[list(r) for r in rows]), None)
        elif self.kind == "TensorBoardLogger":
            self.logger.experiment.add_text(key, _markdown_table(columns, rows))

    def layer_series(self, key: str, series: Mapping[str, Sequence[float]], title: str, y: str) -> None:
        """Values per layer, one line per series: a native W&B line plot; TensorBoard scalars by layer index."""
        clean = {name: [_finite(v) for v in values] for name, values in series.items()}
        if self.kind == "WandbLogger":
            import wandb

            names = [n for n, v in clean.items() if any(x is not None for x in v)]
            if not names:
                return
            xs = list(range(len(self.layers)))
            # line_series wants numbers: a missing value is drawn as a gap (NaN)
            ys = [[float("nan") if x is None else x for x in clean[n]] for n in names]
            self._put(key + "_plot", wandb.plot.line_series(xs=xs, ys=ys, keys=names, title=f"{title} (x: layer "
                      f"index, 0 = {self.layers[0]})", xname="layer index"), None)
        elif self.kind == "TensorBoardLogger":
            for name, values in clean.items():
                for i, v in enumerate(values):
                    if v is not None:
                        self.logger.experiment.add_scalar(f"{key}/{name}", v, global_step=i)

    def bar(self, key: str, labels: Sequence[str], values: Sequence[float], title: str, y: str) -> None:
        pairs = [(str(lab), _finite(v)) for lab, v in zip(labels, values)]
        pairs = [(lab, v) for lab, v in pairs if v is not None]
        if not pairs:
            return
        if self.kind == "WandbLogger":
            import wandb

            table = wandb.Table(columns=["label", y], data=[list(p) for p in pairs])
            self._put(key + "_plot", wandb.plot.bar(table, "label", y, title=title), None)
        elif self.kind == "TensorBoardLogger":
            for lab, v in pairs:
                self.logger.experiment.add_scalar(f"{key}/{lab}", v)

    def flush(self) -> None:
        """W&B: one step per layer, each with its frames; the rest with the first step."""
        if self.kind != "WandbLogger":
            return
        run = self.logger.experiment
        run.define_metric(f"{self.prefix}/layer_index", hidden=True)
        for i, frames in enumerate(self._per_layer):
            data = {f"{self.prefix}/layer_index": i, **frames}
            if i == 0:
                data.update(self._once)
            run.log(data)
        self._per_layer = [{} for _ in self.layers]
        self._once = {}


def _finite(value: Any) -> Optional[float]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None
