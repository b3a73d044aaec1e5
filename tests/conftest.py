"""Shared fixtures: a tiny BERT built from a config, the embedded tokenizer, the real data (committed
extracts everywhere; the full files in ../shared/data where present)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

from lit_rcqa.paths import SHARED_DATA, embedded_model_dir

# Committed whole-article extracts of the real dev sets (see tests/fixtures/README.md): the parity,
# feature and post-processing tests run on them in every clone, with or without ../shared/data.
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SQUAD_V1_EXTRACT = FIXTURES / "squad-v1.1-dev-extract.json"  # 2 articles, 293 questions
SQUAD_V2_EXTRACT = FIXTURES / "squad-v2.0-dev-extract.json"  # 1 article, 208 questions (112 unanswerable)

# The full real files the `shared_data` tests read.
SHARED_FILES = ("dev-v1.1.json.gz", "train-v1.1-subset-44articles.json", "dev-v2.0-subset-6articles.json")
# Set (to anything but "" or "0") where the real data must be present, as in CI: a missing file is
# then a failure, so a run can never pass by skipping every full-data check.
REQUIRE_DATA_ENV = "LIT_RCQA_REQUIRE_DATA"


def data_required() -> bool:
    return os.environ.get(REQUIRE_DATA_ENV, "") not in ("", "0")


def locate_shared_data(folder: Path) -> Path:
    """`folder` if it holds every real file; otherwise skip the test, or fail it when data is required."""
    missing = [name for name in SHARED_FILES if not (folder / name).is_file()]
    if missing:
        reason = f"real SQuAD data not found in {folder}: {', '.join(missing)} (set LIT_RCQA_DATA)"
        if data_required():
            pytest.fail(f"{reason}; {REQUIRE_DATA_ENV} is set, so missing data is a failure", pytrace=False)
        pytest.skip(reason)
    return folder


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The full real SQuAD files (../shared/data or $LIT_RCQA_DATA); see `locate_shared_data`."""
    return locate_shared_data(SHARED_DATA)


@pytest.fixture(scope="session")
def squad_v1_extract() -> Path:
    """Path of the committed SQuAD v1.1 dev extract (always present)."""
    return SQUAD_V1_EXTRACT


@pytest.fixture(scope="session")
def squad_v2_extract() -> Path:
    """Path of the committed SQuAD v2.0 dev extract (always present)."""
    return SQUAD_V2_EXTRACT


def pytest_collection_modifyitems(config, items):
    """The README promises that `-m "not slow"` leaves out multi-process DDP: hold every test to it."""
    unmarked = [item.nodeid for item in items if item.get_closest_marker("ddp") and not item.get_closest_marker("slow")]
    if unmarked:
        raise pytest.UsageError(f"tests marked ddp must also be marked slow: {', '.join(unmarked)}")


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(embedded_model_dir()))


def make_tiny_qa_model(family: str = "bert", *, layers: int = 2, hidden: int = 32, seed: int = 0):
    """A randomly initialised QA model of the given encoder family (fast; for property tests)."""
    from transformers import AutoConfig, AutoModelForQuestionAnswering

    torch.manual_seed(seed)
    kwargs = dict(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                  intermediate_size=4 * hidden, max_position_embeddings=512)
    if family == "distilbert":
        kwargs = dict(vocab_size=30522, dim=hidden, n_layers=layers, n_heads=4, hidden_dim=4 * hidden,
                      max_position_embeddings=512)
    config = AutoConfig.for_model(family, **kwargs)
    model = AutoModelForQuestionAnswering.from_config(config)
    return model.eval()


@pytest.fixture
def tiny_bert():
    return make_tiny_qa_model("bert")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny randomly initialised BERT QA model (2 layers, hidden 32) with the embedded tokenizer, in HF form."""
    from transformers import AutoTokenizer

    path = tmp_path_factory.mktemp("tiny-bert")
    make_tiny_qa_model("bert", layers=2, hidden=32).save_pretrained(path)
    AutoTokenizer.from_pretrained(str(embedded_model_dir())).save_pretrained(path)
    return path
