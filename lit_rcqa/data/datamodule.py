"""Train/dev data for the QA system: synthetic (default), SQuAD v1.1/v2 or DuoRC files, or a hub dataset.

Samplers are our own and DDP-aware (the trainer runs with `use_distributed_sampler=False`):
training batches are grouped by length to cut padding, and every rank gets the same number of
them; evaluation gives each rank whole examples, never duplicates, so summed metrics are exact.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Sampler
from typing_extensions import override

from lit_rcqa.data.example import QAExample
from lit_rcqa.data.features import FeatureConfig, Features, QAFeatureDataset, build_features, collate_features
from lit_rcqa.data.windows import DEFAULT_WINDOWS
from lit_rcqa.errors import UserError
from lit_rcqa.paths import resolve_model_path


def select_features(features: Features, feature_indices: list[int]) -> tuple[list[int], Features]:
    """The given features (in that order) with `example_index` renumbered over the examples they use."""
    example_ids = sorted({features.example_index[f] for f in feature_indices})
    renumber = {e: i for i, e in enumerate(example_ids)}
    n = len(features.example_index)
    picked = {}
    for field in dataclasses.fields(features):
        value = getattr(features, field.name)
        if isinstance(value, list) and len(value) == n:
            value = [value[f] for f in feature_indices]
        picked[field.name] = value
    picked["example_index"] = [renumber[e] for e in picked["example_index"]]
    return example_ids, dataclasses.replace(features, **picked)


@dataclass
class EvalSplit:
    """The dev examples, their features, and gold answer texts by id ([] for an unanswerable question)."""

    examples: list[QAExample]
    features: Features

    @functools.cached_property
    def gold_texts(self) -> dict[str, list[str]]:
        return {ex.id: [a.text for a in ex.answers] for ex in self.examples}

    def select(self, feature_indices: list[int]) -> tuple[list[QAExample], Features]:
        example_ids, features = select_features(self.features, feature_indices)
        return [self.examples[e] for e in example_ids], features


class _EpochForwarder:
    """Lightning calls `set_epoch` on `loader.sampler` and `loader.batch_sampler.sampler`, never on the batch
    sampler itself: this stands in as `batch_sampler.sampler` and passes the epoch on."""

    def __init__(self, batch_sampler: "LengthGroupedBatchSampler"):
        self.set_epoch = batch_sampler.set_epoch


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Random batches of similar length (less padding), split evenly over `world_size` ranks."""

    def __init__(self, lengths: list[int], batch_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1,
                 group_by_length: bool = True, megabatch: int = 50):
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.group_by_length, self.megabatch = group_by_length, megabatch
        self.epoch = 0
        self._skip = 0  # batches of this epoch already trained on before a resume
        self.sampler = _EpochForwarder(self)  # without it every epoch had epoch 0's order

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """Continue a run killed after `batches_done` batches of `epoch`: same order, nothing repeated."""
        self.epoch, self._skip = epoch, batches_done
        if batches_done >= len(self):
            self.epoch, self._skip = epoch + 1, 0

    def _batches(self) -> list[list[int]]:
        rng = np.random.default_rng(self.seed + self.epoch)
        order = rng.permutation(len(self.lengths))
        if self.group_by_length:
            # Sort within large random chunks: batches stay random but hold similar lengths.
            span = self.batch_size * self.megabatch
            chunks = [order[i:i + span] for i in range(0, len(order), span)]
            order = np.concatenate([c[np.argsort(-self.lengths[c], kind="stable")] for c in chunks])
        batches = [order[i:i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        if self.group_by_length:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        # Every rank must take the same number of steps, or DDP waits forever.
        usable = (len(batches) // self.world_size) * self.world_size or len(batches)
        return batches[:usable][self.rank::self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        batches, self._skip = self._batches()[self._skip:], 0
        return iter(batches)

    def __len__(self) -> int:
        return len(self._batches())


class ResumableDataLoader(DataLoader):
    """A training loader whose position Lightning stores in checkpoints (the `state_dict` protocol).

    The position is the number of batches the trainer has *processed* in this epoch, read from the
    trainer itself: the loader's own count would include the batch Lightning prefetches.
    Restoring goes through the data module (`QADataModule.load_state_dict`): Lightning builds and starts
    the training loader (to count the steps for the LR schedule) before it restores the loops' state, so
    the position it hands to `load_state_dict` here arrives too late to change the batches.
    """

    def __init__(self, *args, batches_processed: Callable[[], int], **kwargs):
        super().__init__(*args, **kwargs)
        self._batches_processed = batches_processed

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.batch_sampler.epoch, "batches_done": int(self._batches_processed())}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batch_sampler.resume_at(state["epoch"], state["batches_done"])


class ExampleShardSampler(Sampler[int]):
    """Feature indices of the examples assigned to this rank (example k goes to rank k mod world_size)."""

    def __init__(self, example_index: list[int], *, rank: int = 0, world_size: int = 1):
        self.indices = [f for f, e in enumerate(example_index) if e % world_size == rank]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _resolve_file(path: Optional[str], what: str) -> Optional[str]:
    """Expand $VARS and ~ (configs say `${SQUAD_DIR}/dev-v1.1.json`); the file must exist."""
    if path is None:
        return None
    resolved = os.path.expanduser(os.path.expandvars(path))
    if "$" in resolved:
        raise UserError(f"data.{what}: {path!r} uses an environment variable that is not set")
    if not Path(resolved).is_file():
        raise UserError(f"data.{what}: file not found: {resolved}")
    return resolved


class QADataModule(LightningDataModule):
    """Training and dev data. With no files and no hub dataset it uses the built-in synthetic set.

    Args:
        train_file: Training data: SQuAD v1.1/v2.0 JSON (.json or .json.gz) or DuoRC JSON; $VARS and ~ expand.
            Goes with dev_file; with neither (and no hf_dataset) the synthetic set is used.
        dev_file: Dev data, same formats; scored with the official SQuAD definitions.
        hf_dataset: A Hugging Face hub dataset instead of files, e.g. "squad" or "squad_v2" (needs the network
            and `pip install datasets`).
        synthetic_train_size: Questions in the synthetic training set (the default data).
        synthetic_dev_size: Questions in the synthetic dev set.
        synthetic_seed: Seed that generates the synthetic sets.
        tokenizer_name: Tokenizer folder or name; train.py links it to model.model_name_or_path.
        max_seq_length: Tokens per window (question, context and special tokens).
        doc_stride: Context tokens by which consecutive windows of a long context overlap; below max_seq_length.
        max_query_length: Questions are cut to this many tokens.
        pad_to_max_length: Pad every batch to max_seq_length (slower; by default a batch is padded to its longest).
        batch_size: Training windows per batch (per device).
        eval_batch_size: Dev windows per batch (per device).
        group_by_length: Batch training windows of similar length together (less padding).
        max_train_examples: Use only the first N training questions (null: all).
        max_eval_examples: Use only the first N dev questions (null: all).
        keep_no_answer: Keep unanswerable questions for training, with the CLS token as target (SQuAD v2, DuoRC).
        skip_invalid: Skip and count invalid records instead of stopping at the first one.
        num_workers: DataLoader worker processes (0: load in the main process).
        seed: Seed of the training batch order.
    """

    def __init__(
        self,
        train_file: Optional[str] = None,
        dev_file: Optional[str] = None,
        hf_dataset: Optional[str] = None,
        synthetic_train_size: PositiveInt = 2000,
        synthetic_dev_size: PositiveInt = 400,
        synthetic_seed: NonNegativeInt = 0,
        tokenizer_name: str = "embedded-minilm",
        max_seq_length: PositiveInt = DEFAULT_WINDOWS.max_seq_length,
        doc_stride: PositiveInt = DEFAULT_WINDOWS.doc_stride,
        max_query_length: PositiveInt = DEFAULT_WINDOWS.max_query_length,
        pad_to_max_length: bool = DEFAULT_WINDOWS.pad_to_max_length,
        batch_size: PositiveInt = 32,
        eval_batch_size: PositiveInt = DEFAULT_WINDOWS.eval_batch_size,
        group_by_length: bool = True,
        max_train_examples: Optional[PositiveInt] = None,
        max_eval_examples: Optional[PositiveInt] = None,
        keep_no_answer: bool = False,
        skip_invalid: bool = False,
        num_workers: NonNegativeInt = 0,
        seed: NonNegativeInt = 0,
    ) -> None:
        super().__init__()
        if (train_file is None) != (dev_file is None):
            raise UserError("data.train_file and data.dev_file go together: give both, or neither for synthetic data")
        if doc_stride >= max_seq_length:
            raise UserError(f"data.doc_stride ({doc_stride}) must be smaller than data.max_seq_length ({max_seq_length})")
        self.save_hyperparameters()
        self.train_path = _resolve_file(train_file, "train_file")
        self.dev_path = _resolve_file(dev_file, "dev_file")
        self.feature_config = FeatureConfig(max_seq_length=max_seq_length, doc_stride=doc_stride,
                                            max_query_length=max_query_length, pad_to_max_length=pad_to_max_length)
        self.tokenizer = None
        self.train_examples: list[QAExample] = []
        self.train_features: Optional[Features] = None
        self._eval: Optional[EvalSplit] = None
        self.load_report: dict[str, dict[str, int]] = {}
        self._train_loader: Optional[ResumableDataLoader] = None
        self._resume_position: Optional[dict[str, int]] = None  # from a checkpoint, applied to the next loader

    @property
    def source(self) -> str:
        hp = self.hparams
        # The files read (variables and ~ expanded), so metrics.json names them, not `${SQUAD_DIR}/…`.
        return hp.hf_dataset or (f"{self.train_path} | {self.dev_path}" if hp.train_file else "synthetic")

    def _load(self, stage: str) -> tuple[list[QAExample], list[QAExample]]:
        hp = self.hparams
        if hp.hf_dataset:
            from lit_rcqa.data.hub import load_hub_dataset

            train, dev = load_hub_dataset(hp.hf_dataset)
        elif hp.train_file:
            from lit_rcqa.data.load import load_examples

            dev_data = load_examples(self.dev_path, mode="eval", skip_invalid=hp.skip_invalid)
            self.load_report["dev"] = dict(dev_data.skipped)
            dev, train = dev_data.examples, []
            if stage == "fit":
                train_data = load_examples(self.train_path, mode="train", keep_no_answer=hp.keep_no_answer,
                                           skip_invalid=hp.skip_invalid)
                self.load_report["train"] = dict(train_data.skipped)
                train = train_data.examples
        else:
            from lit_rcqa.data.synthetic import make_synthetic_splits

            train, dev = make_synthetic_splits(hp.synthetic_train_size, hp.synthetic_dev_size, seed=hp.synthetic_seed)
        if hp.max_train_examples:
            train = train[: hp.max_train_examples]
        if hp.max_eval_examples:
            dev = dev[: hp.max_eval_examples]
        return train, dev

    @override
    def setup(self, stage: str) -> None:
        if self._eval is not None and (stage != "fit" or self.train_features is not None):
            return
        from transformers import AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(self.hparams.tokenizer_name))
        except (OSError, ValueError) as err:
            raise UserError(f"tokenizer {self.hparams.tokenizer_name!r}: cannot load ({str(err).splitlines()[0]})") from None
        train, dev = self._load(stage)
        try:  # the data and the window settings disagree (a question too long for the windows, ...)
            if stage == "fit":
                self.train_examples = train
                self.train_features = build_features(train, self.tokenizer, self.feature_config, training=True)
            self._eval = EvalSplit(dev, build_features(dev, self.tokenizer, self.feature_config, training=False))
        except ValueError as err:
            raise UserError(f"data: {err}") from None

    def eval_split(self) -> EvalSplit:
        assert self._eval is not None, "setup() first"
        return self._eval

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _collate(self, batch):
        pad_to = self.feature_config.max_seq_length if self.hparams.pad_to_max_length else None
        return collate_features(batch, self.tokenizer.pad_token_id, pad_to=pad_to)

    @override
    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank()
        features = self.train_features
        lengths = [len(ids) for ids in features.input_ids]
        sampler = LengthGroupedBatchSampler(lengths, self.hparams.batch_size, seed=self.hparams.seed, rank=rank,
                                            world_size=world, group_by_length=self.hparams.group_by_length)
        trainer = self.trainer

        def batches_processed() -> int:
            return trainer.fit_loop.epoch_loop.batch_progress.current.processed if trainer is not None else 0

        if self._resume_position is not None:
            sampler.resume_at(self._resume_position["epoch"], self._resume_position["batches_done"])
            self._resume_position = None
        # Its own generator: creating the iterator draws a seed from it, and drawing from the global one would
        # shift the dropout masks of a resumed run against an uninterrupted one.
        self._train_loader = ResumableDataLoader(
            QAFeatureDataset(features), batch_sampler=sampler, collate_fn=self._collate,
            num_workers=self.hparams.num_workers, batches_processed=batches_processed,
            generator=torch.Generator().manual_seed(self.hparams.seed))
        return self._train_loader

    @override
    def state_dict(self) -> dict[str, Any]:
        """The training position (epoch, batches done), saved in every checkpoint."""
        return {"train_position": self._train_loader.state_dict()} if self._train_loader is not None else {}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume_position = state_dict.get("train_position")

    @override
    def val_dataloader(self) -> DataLoader:
        rank, world = self._rank()
        features = self.eval_split().features
        sampler = ExampleShardSampler(features.example_index, rank=rank, world_size=world)
        return DataLoader(QAFeatureDataset(features), batch_size=self.hparams.eval_batch_size, sampler=sampler,
                          collate_fn=self._collate, num_workers=self.hparams.num_workers,
                          generator=torch.Generator().manual_seed(self.hparams.seed))

    @override
    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()
