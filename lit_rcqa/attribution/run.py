"""Layer-wise IG over a finished training run's dev split, streamed to shards: `run_ig(...)`.

Steps: (1) open the run (`runs/<name>/`: config.yaml, model/, run.json complete), its data and post-processing
settings read by train.py's own parser (`cli.read_run_config`); (2) rebuild its dev split with those data
settings (QADataModule), first `num_examples` questions; (3) check `<out>`: new,
empty or an analysis folder of ours (a manifest, or shards that lost theirs); lock it (one live analyze.py
per folder); check its manifest (model fingerprint, data, IG settings; a different resume is refused) and
every shard's own settings; write the manifest; remove what killed runs left (temp files of dead writers,
tensor files without a sidecar); (4) skip the examples already in complete shards; (5)
`Trainer(inference_mode=False).predict` with `AttributionSystem` and the caller's callbacks (`IGCallbacks`:
the app's shard writer, which calls `store.write_shard`, and whatever else it wants in the loop),
`return_predictions=False` (memory stays flat). Under DDP every rank takes whole examples (example k of the
remaining ones goes to rank k mod world size) and writes its own shards.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Optional, Protocol

from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, Dataset
from typing_extensions import override

from lit_rcqa import process, runs
from lit_rcqa.attribution import store
from lit_rcqa.attribution.integrated_gradients import IGSettings
from lit_rcqa.attribution.layers import EncoderAdapter, parse_layers
from lit_rcqa.attribution.record import layer_name
from lit_rcqa.attribution.system import AttributionSystem, BaselineKind, Explain, ExampleItem
from lit_rcqa.data.datamodule import EvalSplit, ExampleShardSampler, QADataModule
from lit_rcqa.errors import UserError
from lit_rcqa.evaluation.postprocess import PostprocessSettings

# Informational: a moved run folder is still the same model; a schema 1 manifest describes the same settings.
NOT_COMPARED = ("model.path", "schema")


@dataclass(frozen=True)
class TrainedRun:
    """A complete training run folder and the settings its config.yaml holds, as train.py's parser reads them."""

    run_dir: Path
    data: dict[str, Any]                # QADataModule's keyword arguments (the run's `data.*`)
    postprocess: PostprocessSettings    # the run's post-processing: the explained answer is its answer

    @property
    def model_dir(self) -> Path:
        return self.run_dir / "model"

    @property
    def name(self) -> str:
        return self.run_dir.resolve().name

    def data_module(self, num_examples: Optional[int]) -> QADataModule:
        """The run's QADataModule with the run's data settings, the saved tokenizer, the first N dev questions."""
        kwargs = {**self.data, "tokenizer_name": str(self.model_dir), "num_workers": 0}
        if num_examples is not None:
            kwargs["max_eval_examples"] = min(num_examples, kwargs.get("max_eval_examples") or num_examples)
        return QADataModule(**kwargs)


def open_run(run_dir: str | Path) -> TrainedRun:
    """A finished training run, or one clear error (missing, not complete, no model/, bad config.yaml)."""
    from lit_rcqa.cli import read_run_config  # builds train.py's parser: Lightning's CLI, loaded when needed

    path = Path(run_dir)
    if not path.is_dir():
        raise UserError(f"run not found: {path} (pass --run runs/NAME, a folder written by train.py)")
    status = runs.read_status(path).get("status")
    if status != "complete":
        raise UserError(f"run {path} is not complete (status: {status or 'no run.json'}); wait for it to finish "
                        "or pass another --run")
    if not (path / "model" / "config.json").is_file():
        raise UserError(f"run {path} has no saved model ({path / 'model'}); it was not a fit run")
    data, postprocess = read_run_config(path)
    return TrainedRun(path, data, postprocess)


def load_model(run: TrainedRun):
    from lit_rcqa.model import load_qa_model

    return load_qa_model(str(run.model_dir))


def weights_fingerprint(model_dir: Path) -> str:
    """SHA-256 over every file of a saved HF model folder (name, size, bytes): the weights, and config.json and
    the tokenizer files too, since each changes the numbers (the architecture's constants, the input ids)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in model_dir.iterdir() if p.is_file()):
        digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def _file_sha256(path: Optional[str]) -> Optional[str]:
    return None if path is None else hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass(frozen=True)
class IGOptions:
    """What to explain and how the prediction loop runs (only the first block changes results)."""

    layers: str = "all"                 # 'all', '0,6,12' or names like 'embeddings,layer_06'
    num_examples: Optional[int] = 200   # first N dev questions; None: all
    explain: Explain = "predicted"      # the model's own answer (paper) or the gold answer
    baseline: BaselineKind = "zero"     # b = 0, or the mean hidden state over the tokens
    hidden_examples: int = 200          # keep h_ℓ of the first N examples (t-SNE)
    hidden_dtype: str = "float16"
    batch_size: int = 4                 # examples per prediction batch = per shard
    accelerator: str = "cpu"
    devices: Any = 1
    strategy: str = "auto"
    progress: bool = True


@dataclass
class IGRun:
    """What `run_ig` did, for the caller's summary."""

    is_global_zero: bool
    n_examples: int          # examples in the requested dev subset
    n_computed: int          # examples scored by this call (0 when everything was already on disk)
    seconds: float
    layers: list[str] = field(default_factory=list)


def build_manifest(run: TrainedRun, dm: QADataModule, split: EvalSplit, layers: list[int], settings: IGSettings,
                   options: IGOptions) -> dict[str, Any]:
    """What the results in a folder were computed with; `store.settings_of` keeps the keys that change numbers.

    Left out on purpose: `max_batch_tokens`, `accelerator`, `devices`, `strategy` and `batch_size`. They say
    how and where the same computation runs, not what it computes: chunking the interpolation rows, running on
    a GPU (float32 matmuls; PyTorch leaves TF32 off by default) or on several DDP ranks (each example whole on
    one rank) changes the scores at rounding level only: relative 1e-4 or less, as tests/attribution/
    test_integrated_gradients.py (chunking) and test_gpu.py (GPU against CPU) check. A resume may change them.
    """
    hp = dm.hparams
    if hp.hf_dataset:
        source: dict[str, Any] = {"hf_dataset": hp.hf_dataset}
    elif dm.dev_path:
        source = {"dev_file": str(Path(dm.dev_path).resolve()), "dev_sha256": _file_sha256(dm.dev_path)}
    else:
        source = {"synthetic_train_size": hp.synthetic_train_size, "synthetic_dev_size": hp.synthetic_dev_size,
                  "synthetic_seed": hp.synthetic_seed}
    return {
        "schema": store.SCHEMA_VERSION,
        "model": {"path": str(run.model_dir.resolve()), "fingerprint": weights_fingerprint(run.model_dir)},
        "data": {**source, "max_seq_length": hp.max_seq_length, "doc_stride": hp.doc_stride,
                 "max_query_length": hp.max_query_length, "num_examples": len(split.examples)},
        "postprocess": vars(run.postprocess),
        "ig": {"layers": [layer_name(i) for i in layers], "steps": settings.steps, "method": settings.method,
               "target": settings.target, "baseline": options.baseline, "tolerance": settings.tolerance,
               "max_steps": settings.max_steps, "min_steps": settings.min_steps,
               "refine_method": settings.refine_method, "max_answer_length": settings.max_answer_length,
               "explain": options.explain, **_panel_settings(settings)},
        "hidden": {"examples": options.hidden_examples, "dtype": options.hidden_dtype},
    }


def _panel_settings(settings: IGSettings) -> dict[str, Any]:
    """The adaptive panels' settings, recorded only where they apply (adaptive panels)."""
    if settings.tolerance is None or settings.refine_method != "adaptive":
        return {}
    return {"split": settings.split, "refine_fraction": settings.refine_fraction,
            "panel_points": settings.panel_points, "breakpoints": [float(x) for x in settings.breakpoints],
            "criterion": settings.criterion}


# What adaptive-panel folders made before the manifest recorded a panel setting held: a key an older manifest
# lacks is read as its value then (split and fraction were recorded from 2026-12-01, the rest from 2026-12-02).
_PANELS_BEFORE_RECORDED = {"split": "nodes", "refine_fraction": 0.5, "panel_points": 5,
                           "breakpoints": [0.0, 0.5, 1.0], "criterion": "panels"}


# Temp names of the top-level files (manifest.json, analyze_config.yaml), as `process.write_bytes_atomic` writes
# them (`.<name>.lit_rcqa.tmp-<host>-<pid>`) or older versions did (`.<name>.tmp-<pid>`, on this host); a process
# killed inside the write leaves one behind.
TOP_TEMP_PATTERN = re.compile(r"^\.(?:manifest\.json|analyze_config\.yaml)(?:\.tmp-|"
                              + re.escape(process.TEMP_MARKER) + r"(?P<host>[A-Za-z0-9_.-]+)-)(?P<pid>\d+)$")


def _our_temp(path: Path, out_dir: Path) -> bool:
    """A temp file one of our writers leaves when killed mid-write (whoever wrote it, dead or alive)."""
    if path.parent == out_dir:
        return bool(TOP_TEMP_PATTERN.match(path.name))
    return path.parent == out_dir / store.SCORES_DIR and bool(store.TEMP_PATTERN.match(path.name))


def check_out_dir(out_dir: Path) -> None:
    """Refuse an `--out` we did not write: it must be new, empty (no files), hold a manifest or our shards, or
    hold nothing but our own temp files (a run killed while writing its manifest).

    Analyses rewrite report.html, figures/ and tables/ in place: in someone else's folder that would replace
    their files without a word.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file, not a folder; pass a new or empty folder")
    if not out_dir.is_dir() or (out_dir / store.MANIFEST).exists():
        return
    scores = out_dir / store.SCORES_DIR
    if scores.is_dir() and any(store.SHARD_PATTERN.match(p.name) for p in scores.iterdir()):
        return  # our shards whose manifest was lost: each shard says what it was computed with
    if any((p.is_file() or p.is_symlink()) and not _our_temp(p, out_dir) for p in out_dir.rglob("*")):
        raise UserError(f"--out {out_dir} holds other files and no {store.MANIFEST}: not an analysis folder of "
                        "analyze.py, and its files could be overwritten; pass a new or empty folder")


def clean_leftovers(out_dir: Path) -> None:
    """Remove what killed runs left: our temp files whose writer is gone (on this host; a live writer's are
    kept), and tensor files whose sidecar was never committed. Call it holding `out_dir_lock`, before the
    prediction loop starts: no rank of this launch writes yet, and no other launch may write here."""
    for path in sorted(out_dir.iterdir()) if out_dir.is_dir() else []:
        m = TOP_TEMP_PATTERN.match(path.name)
        if m and process.writer_is_gone(m.group("host"), int(m.group("pid"))):
            path.unlink(missing_ok=True)
    scores = out_dir / store.SCORES_DIR
    if scores.is_dir():
        for path in sorted(scores.iterdir()):
            if store.is_stale_temp(path.name):
                path.unlink(missing_ok=True)
        for path in store.orphan_tensor_files(scores):
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def out_dir_lock(out_dir: Path) -> Iterator[None]:
    """One live analyze.py per `--out`: an exclusive `flock` on the folder itself (created if missing) while
    the block runs. The kernel drops it when the process dies, however it dies, so there is never a stale lock
    to take over, and no lock file among the results. DDP ranks that Lightning starts (LOCAL_RANK > 0) run
    inside their launcher's lock and take none. A second process is refused in one line naming the holder.
    (runs.py's run-folder lock writes `.lock` and run.json and speaks of --run.name: not for this folder.)"""
    if not process.is_launcher():
        yield
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking (analyze.py targets Linux)
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(out_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _flock_holder(os.fstat(fd))
            who = f"another analyze.py (process {holder})" if holder else "another analyze.py"
            raise UserError(f"--out {out_dir} is in use by {who}: wait for it to end, stop it, or pass another "
                            "--out") from None
        yield
    finally:
        os.close(fd)  # releases the lock


def _flock_holder(stat: os.stat_result) -> Optional[int]:
    """The pid holding a flock on that file, from /proc/locks (Linux); None where it cannot be told."""
    where = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()  # "1: FLOCK  ADVISORY  WRITE 26453 fe:00:2236621 0 EOF"
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == where and fields[4].isdigit():
            return int(fields[4])
    return None


def check_manifest(out_dir: Path, manifest: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The stored manifest if it matches `manifest`; a clear error naming the differing keys otherwise."""
    old = store.read_manifest(out_dir)
    if old is not None:
        ig = old.get("ig")
        if isinstance(ig, dict) and ig.get("tolerance") is not None and ig.get("refine_method") == "adaptive":
            old = {**old, "ig": {**_PANELS_BEFORE_RECORDED, **ig}}
        diff = [k for k in store.manifest_conflicts(old, manifest) if k not in NOT_COMPARED]
        if diff:
            raise UserError(f"{out_dir} holds IG results made with different settings ({', '.join(diff)}); "
                            "pass another --out, or delete that folder to start over")
    return old


class _ExampleItems(Dataset):
    """Item k = the example at dev position positions[k] with all its windows."""

    def __init__(self, split: EvalSplit, positions: list[int]):
        self.split, self.positions = split, positions
        self.windows: dict[int, list[int]] = defaultdict(list)
        for f, e in enumerate(split.features.example_index):
            self.windows[e].append(f)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, k: int) -> ExampleItem:
        position = self.positions[k]
        examples, features = self.split.select(self.windows[position])
        return ExampleItem(position, examples[0], features)


class _IGData(LightningDataModule):
    """Whole examples per rank (no duplicates), batches are lists of `ExampleItem`."""

    def __init__(self, items: _ExampleItems, batch_size: int):
        super().__init__()
        self.items, self.batch_size = items, batch_size

    @override
    def predict_dataloader(self) -> DataLoader:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        sampler = ExampleShardSampler(list(range(len(self.items))), rank=rank, world_size=world)
        return DataLoader(self.items, batch_size=self.batch_size, sampler=sampler, collate_fn=list)


class IGCallbacks(Protocol):
    """Builds the prediction loop's callbacks; among them, the one that writes each batch's records to disk
    (`store.write_shard(out_dir, records, rank=..., settings=settings)`). The app's: `callbacks.ig_callbacks`."""

    def __call__(self, out_dir: Path, settings: dict[str, Any], total: int, progress: bool) -> list[Callback]:
        """`settings`: what every shard says it was computed with; `total`: examples to score; `progress`:
        whether to show a progress bar."""


def run_ig(run: TrainedRun, out_dir: str | Path, settings: IGSettings, options: IGOptions = IGOptions(),
           model=None, *, callbacks: Optional[IGCallbacks] = None,
           hold: Optional[contextlib.ExitStack] = None) -> IGRun:
    """Score the run's first `num_examples` dev questions with layer-wise IG into `<out_dir>/scores/`, through
    the prediction-loop callbacks `callbacks` builds (they write the shards).

    The folder is locked (`out_dir_lock`) from the first look at its contents to the return, or, given `hold`,
    until the caller closes that stack (analyze.py keeps it for its analyses)."""
    if callbacks is None:
        raise TypeError("run_ig needs callbacks=: a factory of the prediction loop's callbacks, one of which writes "
                        "the shards (analyze.py passes callbacks.ig_callbacks); without them nothing is written")
    with contextlib.ExitStack() as own:
        return _run_ig(run, Path(out_dir), settings, options, model, callbacks, hold if hold is not None else own)


def _run_ig(run: TrainedRun, out_dir: Path, settings: IGSettings, options: IGOptions, model,
            callbacks: IGCallbacks, hold: contextlib.ExitStack) -> IGRun:
    check_out_dir(out_dir)
    # The longest span IG may explain is the run's: its answers were chosen under that limit.
    settings = replace(settings, max_answer_length=run.postprocess.max_answer_length)
    # 1-2. model, layers (validated before anything is written), dev subset
    model = load_model(run) if model is None else model
    layers = parse_layers(options.layers, EncoderAdapter(model).num_layers)  # also refuses unsupported families
    dm = run.data_module(options.num_examples)
    dm.setup("validate")
    split = dm.eval_split()
    # 3. refuse a resume with other settings: the manifest's, then every shard's own (a manifest can be lost
    # or replaced; the shards say what they hold), all before anything is written
    manifest = build_manifest(run, dm, split, layers, settings, options)
    hold.enter_context(out_dir_lock(out_dir))  # from here until the end no other analyze.py works in out_dir
    old = check_manifest(out_dir, manifest)
    shard_settings = store.settings_of(manifest)
    done = store.finished_ids(out_dir, shard_settings)  # also refuses damaged or edited shards
    if process.is_launcher():
        scores = out_dir / store.SCORES_DIR
        scores.mkdir(parents=True, exist_ok=True)
        if old is None:
            process.write_json_atomic(out_dir / store.MANIFEST, manifest)
        clean_leftovers(out_dir)  # before the prediction loop: no rank writes yet
    # 4. resume: skip finished examples
    todo = [p for p, ex in enumerate(split.examples) if ex.id not in done]
    names = [layer_name(i) for i in layers]
    if not todo:
        return IGRun(process.is_launcher(), len(split.examples), 0, 0.0, names)
    # 5. the prediction loop
    system = AttributionSystem(model, dm.tokenizer, layers, settings, post=run.postprocess, explain=options.explain,
                               baseline=options.baseline, hidden_examples=options.hidden_examples,
                               hidden_dtype=options.hidden_dtype)
    trainer = Trainer(accelerator=options.accelerator, devices=options.devices, strategy=options.strategy,
                      inference_mode=False, logger=False, enable_checkpointing=False, enable_model_summary=False,
                      enable_progress_bar=False, use_distributed_sampler=False, default_root_dir=str(out_dir),
                      callbacks=callbacks(out_dir, shard_settings, len(todo), options.progress))
    started = time.perf_counter()
    with warnings.catch_warnings():
        # The system, not the datamodule, says how its batches (python objects) move: that is intended.
        warnings.filterwarnings("ignore", message=".*overridden `transfer_batch_to_device`.*")
        trainer.predict(system, datamodule=_IGData(_ExampleItems(split, todo), options.batch_size),
                        return_predictions=False)
    seconds = time.perf_counter() - started
    if trainer.is_global_zero:
        missing = {ex.id for ex in split.examples} - store.finished_ids(out_dir)
        if missing:
            raise UserError(f"{len(missing)} examples have no IG shard in {out_dir / store.SCORES_DIR} after the run; "
                            "re-run the same command to compute them")
    return IGRun(trainer.is_global_zero, len(split.examples), len(todo), seconds, names)
