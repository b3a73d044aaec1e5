"""A finished training run folder written by hand in a second: a tiny BERT, the embedded tokenizer, config.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from lit_rcqa.paths import embedded_model_dir
from tests.attribution.test_integrated_gradients import with_random_biases
from tests.conftest import make_tiny_qa_model

# Short windows (64 tokens, stride 24) so most synthetic passages span several windows.
DATA = {"synthetic_train_size": 8, "synthetic_dev_size": 12, "synthetic_seed": 0, "max_seq_length": 64,
        "doc_stride": 24, "max_query_length": 32, "batch_size": 8, "eval_batch_size": 16}


def make_tiny_run(run_dir: Path, *, seed: int = 0, dev_size: int = 12) -> Path:
    """`run_dir` as train.py leaves it (model/, config.yaml, run.json complete), without the training."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # save_pretrained's bar would land in the tests' captured stderr
    run_dir.mkdir(parents=True, exist_ok=True)
    model = with_random_biases(make_tiny_qa_model("bert", layers=2, hidden=32, seed=seed), seed=seed + 3)
    model.save_pretrained(run_dir / "model")
    AutoTokenizer.from_pretrained(str(embedded_model_dir())).save_pretrained(run_dir / "model")
    config = {"model": {"model_name_or_path": "tiny", "n_best": 20, "max_answer_length": 30,
                        "version_2_with_negative": False, "null_threshold": 0.0},
              "data": {**DATA, "synthetic_dev_size": dev_size, "tokenizer_name": "tiny"}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "run.json").write_text(json.dumps({"kind": "fit", "status": "complete", "updated": "2020-01-01"}))
    return run_dir
