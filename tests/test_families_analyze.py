"""Every encoder family end to end: `train.py` (3 steps) -> `analyze.py --layers all` (2 questions) -> report.

Tiny random models with tokenizers trained here, offline (`tests/families.py`), plus MPNet, which has no layer
stack of its own and goes through the generic path (its folder is built below in the same way).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lit_rcqa.analyze import main as analyze
from lit_rcqa.attribution import store
from tests.families import FAMILIES, HEADS, HIDDEN, LAYERS, MAX_POSITIONS, VOCAB_SIZE, build_family

GENERIC_ONLY = "mpnet"


def build_mpnet(folder: Path) -> Path:
    """A tiny random MPNetForQuestionAnswering and a WordPiece MPNet tokenizer trained on the synthetic texts."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import AutoConfig, AutoModelForQuestionAnswering, MPNetTokenizer

    from lit_rcqa.data.synthetic import make_synthetic_splits

    train, _ = make_synthetic_splits(300, 1, seed=0)
    texts = list(dict.fromkeys(ex.context for ex in train)) + [ex.question for ex in train]
    trainer_tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    trainer_tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    trainer_tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # MPNet's own order: <s> 0, <pad> 1 (its embeddings' padding index), </s> 2
    trainer_tok.train_from_iterator(texts, trainers.WordPieceTrainer(
        vocab_size=VOCAB_SIZE, show_progress=False, special_tokens=["<s>", "<pad>", "</s>", "[UNK]", "<mask>"]))
    tokenizer = MPNetTokenizer(vocab=trainer_tok.get_vocab())
    config = AutoConfig.for_model("mpnet", vocab_size=len(tokenizer), hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                                  num_attention_heads=HEADS, intermediate_size=2 * HIDDEN,
                                  max_position_embeddings=MAX_POSITIONS + 2, pad_token_id=tokenizer.pad_token_id,
                                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    AutoModelForQuestionAnswering.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("family", [*FAMILIES, GENERIC_ONLY])
def test_train_then_analyze_all_layers_writes_the_report(family, tmp_path, capsys):
    from tests.test_train import base_args, train

    base = build_mpnet(tmp_path / "base") if family == GENERIC_ONLY else build_family(family, tmp_path / "base")
    result = train(base_args(base, "r", "--trainer.max_steps", "3", "--run.logger", "none",
                             "--data.synthetic_dev_size", "4"), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    run = tmp_path / "runs" / "r"
    assert json.loads((run / "model" / "config.json").read_text())["model_type"] == family
    code = analyze(["--run", str(run), "--layers", "all", "--num-examples", "2", "--steps", "4",
                    "--hidden-examples", "2", "--logger", "none", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    out = run / "analysis"
    records = store.load(out)
    assert len(records) == 2
    for record in records.values():
        assert record.layers == ["embeddings", "layer_01", "layer_02"]
        assert record.importance.shape == (3, len(record.tokens)) and np.isfinite(record.importance).all()
        assert record.passage_start <= record.pred_start <= record.pred_end < record.passage_end
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "layer_02" in report
    assert (out / "tables" / "completeness.csv").is_file()
