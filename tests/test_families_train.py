"""Every encoder family end to end: windows equal the tokenizer's own overflowing pair encoding, and
`python train.py` trains, validates, saves and predicts for each (tiny random models, `tests/families.py`;
the runs are shared with tests/test_families_analyze.py, see `tests/families_run.py`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lit_rcqa.data.example import Answer, QAExample
from lit_rcqa.data.features import FeatureConfig, build_features
from lit_rcqa.data.synthetic import make_synthetic_splits
from tests.families import FAMILIES, build_family
from tests.families_run import ALL_FAMILIES, DEV_SIZE, LIMIT, FamilyRuns, family_runs

# Texts that stress offsets: runs of spaces, a tab and a newline, accents, a leading space, digits.
ODD_CONTEXT = ("  Zoë  Brémont\tbuilt the  Café Noir in 1887.\nIt  sold crêpes for 3.50 francs; later, in 1901, "
               "the café moved  to Saint-Étienne, where Zoë's nephew ran it until 1930 .  ")


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {name: build_family(name, root / name) for name in FAMILIES}


def _examples() -> list[QAExample]:
    _, dev = make_synthetic_splits(1, 40, seed=3)
    odd = [QAExample("odd1", "t", ODD_CONTEXT, "  Who built the Café Noir?", (Answer("Zoë  Brémont", 2),)),
           QAExample("odd2", "t", ODD_CONTEXT, "Where did the café move in 1901?",
                     (Answer("Saint-Étienne", ODD_CONTEXT.index("Saint")),))]
    return dev + odd


def _reference(examples, tokenizer, config):
    """The plain transformers pair call for the same windows (the HF run_qa.py recipe)."""
    question_first = tokenizer.padding_side == "right"
    qs, cs = [ex.question.lstrip() for ex in examples], [ex.context for ex in examples]
    enc = tokenizer(qs if question_first else cs, cs if question_first else qs,
                    truncation="only_second" if question_first else "only_first",
                    max_length=config.max_seq_length, stride=config.doc_stride, return_overflowing_tokens=True,
                    return_offsets_mapping=True, padding="max_length" if config.pad_to_max_length else False)
    ctx = 1 if question_first else 0
    offsets = [[tuple(o) if s == ctx else None for o, s in zip(enc["offset_mapping"][i], enc.sequence_ids(i))]
               for i in range(len(enc["input_ids"]))]
    return enc, offsets


@pytest.mark.parametrize("pad", [False, True])
@pytest.mark.parametrize("family", FAMILIES)
def test_windows_and_offsets_equal_the_tokenizers_overflowing_encoding(family, pad, family_dirs):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(family_dirs[family])
    config = FeatureConfig(max_seq_length=96, doc_stride=24, max_query_length=64, pad_to_max_length=pad)
    examples = _examples()
    features = build_features(examples, tokenizer, config, training=False)
    enc, offsets = _reference(examples, tokenizer, config)
    assert features.input_ids == enc["input_ids"]
    assert features.attention_mask == enc["attention_mask"]
    assert features.example_index == list(enc["overflow_to_sample_mapping"])
    assert features.offsets == offsets
    if "token_type_ids" in tokenizer.model_input_names:
        assert features.token_type_ids == enc["token_type_ids"]
    else:
        assert features.token_type_ids is None
    assert len(features) > 2 * len(examples)  # several windows per context
    # every located answer is labelled in some window, and the labelled span covers it
    for i, e in enumerate(features.example_index):
        ex, s, t = examples[e], features.start_positions[i], features.end_positions[i]
        if s != features.cls_index[i]:
            answer = ex.answers[0]
            assert features.offsets[i][s][0] <= answer.answer_start
            assert features.offsets[i][t][1] >= answer.answer_start + len(answer.text)
    assert features.input_ids[0][features.cls_index[0]] == tokenizer.cls_token_id


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> FamilyRuns:
    return family_runs(tmp_path_factory)


@pytest.mark.slow
@pytest.mark.timeout(LIMIT)
@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_train_py_trains_validates_saves_and_predicts(family, runs):
    """`python train.py` (3 steps) for each family, run in-process with the others (`tests/families_run.py`)."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    runs.assert_ok(family, "train")
    run, base = runs.run_dir(family), runs.base(family)
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    saved = AutoModelForQuestionAnswering.from_pretrained(run / "model")
    assert saved.config.model_type == family
    trained = {k: v for k, v in saved.state_dict().items()}
    initial = AutoModelForQuestionAnswering.from_pretrained(base).state_dict()
    assert any(not (trained[k] == initial[k]).all() for k in initial), "3 steps changed no weight"
    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    assert tokenizer("a", "b")["input_ids"] == AutoTokenizer.from_pretrained(base)("a", "b")["input_ids"]
    predictions = json.loads((run / "predictions.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(predictions) == DEV_SIZE == metrics["total"] and all(isinstance(v, str) for v in predictions.values())
    nbest = json.loads((run / "nbest_predictions.json").read_text())
    assert set(nbest) == set(predictions)
    assert all(predictions[k] == nbest[k][0]["text"] for k in predictions)


@pytest.mark.parametrize("family", FAMILIES)
def test_padding_a_window_in_a_batch_does_not_change_its_logits(family, family_dirs):
    """Per-batch padding (collate_features) must be invisible to every family's model: each window's
    logits in a padded batch equal those of the window run alone (ModernBERT unpads, DeBERTa builds
    relative positions, RoBERTa counts positions from its padding index)."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from lit_rcqa.data.features import QAFeatureDataset, collate_features

    tokenizer = AutoTokenizer.from_pretrained(family_dirs[family])
    model = AutoModelForQuestionAnswering.from_pretrained(family_dirs[family]).eval()
    features = build_features(_examples()[:6], tokenizer, FeatureConfig(96, 24, 64), training=False)
    items = [QAFeatureDataset(features)[i] for i in range(len(features))]
    batch = collate_features(items, tokenizer.pad_token_id)
    names = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch]
    assert len({len(it["input_ids"]) for it in items}) > 1  # the batch really holds padding
    with torch.no_grad():
        padded = model(**{k: batch[k] for k in names})
        for i, item in enumerate(items):
            alone = model(**{k: torch.tensor([item[k]]) for k in names})
            n = len(item["input_ids"])
            torch.testing.assert_close(padded.start_logits[i, :n], alone.start_logits[0], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(padded.end_logits[i, :n], alone.end_logits[0], rtol=1e-4, atol=1e-5)
