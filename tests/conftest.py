"""Shared fixtures: a tiny BERT built from a config, the embedded tokenizer, the shared real data."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

from lit_rcqa.paths import SHARED_DATA, embedded_model_dir


@pytest.fixture(scope="session")
def shared_data():
    """The real SQuAD files; tests that need them skip with a clear reason where they are absent."""
    if not (SHARED_DATA / "dev-v1.1.json.gz").exists():
        pytest.skip(f"real SQuAD data not found in {SHARED_DATA} (set LIT_RCQA_DATA)")
    return SHARED_DATA


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
