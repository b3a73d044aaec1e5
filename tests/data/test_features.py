"""Windowed features: equal to the tokenizer's own overflowing pair encoding, labels, max-context,
stride, question truncation, padding; for BERT WordPiece and an in-test byte-level BPE tokenizer."""

from __future__ import annotations

import pytest
import torch

from lit_rcqa.data.example import Answer, QAExample
from lit_rcqa.data.features import FeatureConfig, QAFeatureDataset, build_features, collate_features
from lit_rcqa.data.squad import load_squad
from tests.conftest import SQUAD_V1_EXTRACT

SMALL = FeatureConfig(max_seq_length=96, doc_stride=32, max_query_length=20)  # many windows per context


@pytest.fixture(scope="module", params=["extract", "full_dev"])
def dev_subset(request):
    """Real dev questions: the committed extract (every clone; 293 questions) and the first 400 of the full set."""
    if request.param == "extract":
        return load_squad(SQUAD_V1_EXTRACT).examples
    return load_squad(request.getfixturevalue("shared_data") / "dev-v1.1.json.gz").examples[:400]


@pytest.fixture(scope="module")
def bpe_tokenizer(dev_subset):
    """A tiny byte-level BPE (RoBERTa-style: <s> q </s></s> c </s>, no token types), trained here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(dict.fromkeys(ex.context for ex in dev_subset[:150])) + [ex.question for ex in dev_subset[:150]]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")),
                                                      trim_offsets=True, add_prefix_space=True)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", cls_token="<s>",
                                   sep_token="</s>", pad_token="<pad>", unk_token="<unk>",
                                   model_input_names=["input_ids", "attention_mask"])


def _reference(examples, tokenizer, config):
    """The plain transformers pair call (run_qa.py style) for the same windows."""
    question_first = tokenizer.padding_side == "right"
    qs, cs = [ex.question.lstrip() for ex in examples], [ex.context for ex in examples]
    enc = tokenizer(qs if question_first else cs, cs if question_first else qs,
                    truncation="only_second" if question_first else "only_first",
                    max_length=config.max_seq_length, stride=config.doc_stride, return_overflowing_tokens=True,
                    return_offsets_mapping=True, padding="max_length" if config.pad_to_max_length else False)
    ctx = 1 if question_first else 0
    offsets = [[o if s == ctx else None for o, s in zip(enc["offset_mapping"][i], enc.sequence_ids(i))]
               for i in range(len(enc["input_ids"]))]
    return enc, offsets


@pytest.mark.parametrize("which", ["bert", "bpe", "bpe_left"])
@pytest.mark.parametrize("pad", [False, True])
def test_windows_equal_the_tokenizers_overflowing_pair_encoding(which, pad, tokenizer, bpe_tokenizer, dev_subset):
    tok = tokenizer if which == "bert" else bpe_tokenizer
    if which == "bpe_left":  # left padding: the context goes first, as run_qa.py does
        tok = type(tok)(tokenizer_object=tok.backend_tokenizer, padding_side="left", bos_token="<s>",
                        eos_token="</s>", cls_token="<s>", sep_token="</s>", pad_token="<pad>",
                        model_input_names=["input_ids", "attention_mask"])
    config = FeatureConfig(SMALL.max_seq_length, SMALL.doc_stride, 64, pad_to_max_length=pad)
    examples = dev_subset[:120]
    features = build_features(examples, tok, config, training=False)
    enc, offsets = _reference(examples, tok, config)
    assert features.input_ids == enc["input_ids"]
    assert features.attention_mask == enc["attention_mask"]
    assert features.example_index == list(enc["overflow_to_sample_mapping"])
    assert features.offsets == offsets
    if which == "bert":
        assert features.token_type_ids == enc["token_type_ids"]
    else:
        assert features.token_type_ids is None
    assert len(features) > len(examples)  # windows were made
    if pad:
        assert {len(ids) for ids in features.input_ids} == {config.max_seq_length}


@pytest.mark.parametrize("which", ["bert", "bpe"])
def test_labels_point_at_the_answer_in_every_window_that_holds_it(which, tokenizer, bpe_tokenizer, dev_subset):
    tok = tokenizer if which == "bert" else bpe_tokenizer
    examples = dev_subset
    f = build_features(examples, tok, SMALL, training=True)
    labelled = 0
    for i in range(len(f)):
        ex = examples[f.example_index[i]]
        answer = ex.answers[0]
        a_start, a_end = answer.answer_start, answer.answer_start + len(answer.text)
        ctx = [o for o in f.offsets[i] if o is not None]
        fits = ctx[0][0] <= a_start and a_end <= ctx[-1][1]
        s, e = f.start_positions[i], f.end_positions[i]
        if not fits:
            assert s == e == f.cls_index[i] == 0
            continue
        labelled += 1
        (s_char, _), (_, e_char) = f.offsets[i][s], f.offsets[i][e]
        span = ex.context[s_char:e_char]
        assert s_char <= a_start and a_end <= e_char  # covers the answer ...
        assert f.offsets[i][s][1] > a_start and f.offsets[i][e][0] < a_end  # ... minimally
        boundaries = {o[0] for o in ctx} | {o[1] for o in ctx}
        if a_start in boundaries and a_end in boundaries:  # answer aligned to tokens: exact text
            assert span.split() == answer.text.split()
    assert labelled >= len(examples)  # every answer fits at least one window here


def test_max_context_flags_match_googles_rule(tokenizer, dev_subset):
    """Brute force over windows in character space: each context token is scored exactly once,
    in the window maximising min(#left, #right) + 0.01 * window length (earliest on ties)."""
    f = build_features(dev_subset[:150], tokenizer, SMALL, training=False)
    by_example: dict[int, list[int]] = {}
    for i, e in enumerate(f.example_index):
        by_example.setdefault(e, []).append(i)
    multi = 0
    for e, windows in by_example.items():
        multi += len(windows) > 1
        ctx = {i: [k for k, o in enumerate(f.offsets[i]) if o is not None] for i in windows}
        tokens = sorted({f.offsets[i][k] for i in windows for k in ctx[i]})
        for tok_offset in tokens:
            best, best_score = None, None
            for i in windows:
                positions = [k for k in ctx[i] if f.offsets[i][k] == tok_offset]
                if not positions:
                    continue
                j = ctx[i].index(positions[0])
                score = min(j, len(ctx[i]) - 1 - j) + 0.01 * len(ctx[i])
                if best_score is None or score > best_score:
                    best, best_score = (i, positions[0]), score
            flagged = [(i, k) for i in windows for k in ctx[i]
                       if f.offsets[i][k] == tok_offset and f.token_is_max_context[i][k]]
            assert flagged == [best]
        for i in windows:  # non-context positions are never max-context
            assert not any(m for o, m in zip(f.offsets[i], f.token_is_max_context[i]) if o is None)
    assert multi > 50


def test_consecutive_windows_share_doc_stride_context_tokens(tokenizer, dev_subset):
    f = build_features(dev_subset[:100], tokenizer, SMALL, training=False)
    shared = 0
    for i in range(1, len(f)):
        if f.example_index[i] != f.example_index[i - 1]:
            continue
        prev = [o for o in f.offsets[i - 1] if o is not None]
        cur = [o for o in f.offsets[i] if o is not None]
        assert prev[-SMALL.doc_stride:] == cur[:SMALL.doc_stride]
        assert prev[-SMALL.doc_stride - 1] not in cur
        shared += 1
    assert shared > 20


def test_long_questions_keep_their_first_max_query_length_tokens(tokenizer, bpe_tokenizer):
    question = " ".join(f"word{i} unbelievably" for i in range(60)) + "?"
    context = "The answer is here. " * 30
    examples = [QAExample("long", "t", context, question, (Answer("answer", 4),)),
                QAExample("short", "t", context, "Where is it?", (Answer("answer", 4),))]
    for tok in (tokenizer, bpe_tokenizer):
        config = FeatureConfig(max_seq_length=128, doc_stride=32, max_query_length=16)
        f = build_features(examples, tok, config, training=True)
        own = tok(question, add_special_tokens=False)["input_ids"]
        first = f.offsets[0].index(next(o for o in f.offsets[0] if o is not None))  # first context position
        ids = f.input_ids[0]
        cls_offset = 1  # <s>/[CLS]
        q_tokens = [t for t in ids[cls_offset:first] if t not in tok.all_special_ids]
        assert q_tokens == own[:16]
        short = [i for i, e in enumerate(f.example_index) if e == 1][0]
        expected = tok("Where is it?", add_special_tokens=False)["input_ids"]
        assert [t for t in f.input_ids[short] if t not in tok.all_special_ids][:len(expected)] == expected


def test_impossible_and_unlocated_answers_label_cls_and_training_checks(tokenizer):
    ctx = "Denver won the game in 2016."
    examples = [QAExample("imp", "t", ctx, "Who lost?", (), is_impossible=True),
                QAExample("duorc", "t", ctx, "When?", (Answer("long ago", -1),))]
    f = build_features(examples, tokenizer, FeatureConfig(), training=False)
    assert f.start_positions == f.end_positions == f.cls_index == [0, 0]
    with pytest.raises(ValueError, match="duorc"):
        build_features(examples, tokenizer, FeatureConfig(), training=True)
    f = build_features(examples[:1], tokenizer, FeatureConfig(), training=True)  # impossible is fine
    assert f.start_positions == [0]


def test_dataset_and_dynamic_vs_fixed_padding(tokenizer, bpe_tokenizer, dev_subset):
    f = build_features(dev_subset[:8], tokenizer, FeatureConfig(), training=True)
    ds = QAFeatureDataset(f)
    items = [ds[i] for i in range(len(ds))]
    assert set(items[0]) == {"input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions",
                             "feature_index"}
    assert [it["feature_index"] for it in items] == list(range(len(f)))
    longest = max(len(it["input_ids"]) for it in items)
    batch = collate_features(items, tokenizer.pad_token_id)
    assert batch["input_ids"].shape == (len(items), longest) and batch["input_ids"].dtype == torch.long
    for key in ("attention_mask", "token_type_ids"):
        assert batch[key].shape == batch["input_ids"].shape
    assert batch["start_positions"].tolist() == f.start_positions and batch["feature_index"].shape == (len(items),)
    for row, it in zip(range(len(items)), items):
        n = len(it["input_ids"])
        assert batch["input_ids"][row, :n].tolist() == it["input_ids"]
        assert (batch["input_ids"][row, n:] == tokenizer.pad_token_id).all() and batch["attention_mask"][row].sum() == n
    fixed = collate_features(items, tokenizer.pad_token_id, pad_to=384)
    assert fixed["input_ids"].shape == (len(items), 384)
    # padding in the features themselves gives the same model inputs as padding per batch to 384
    padded = build_features(dev_subset[:8], tokenizer, FeatureConfig(pad_to_max_length=True), training=True)
    again = collate_features([QAFeatureDataset(padded)[i] for i in range(len(padded))], tokenizer.pad_token_id)
    for key in fixed:
        assert torch.equal(fixed[key], again[key]), key
    # no token types: the key is simply absent
    b = build_features(dev_subset[:4], bpe_tokenizer, SMALL, training=True)
    bpe_batch = collate_features([QAFeatureDataset(b)[i] for i in range(len(b))], bpe_tokenizer.pad_token_id)
    assert "token_type_ids" not in bpe_batch and bpe_batch["input_ids"].shape[1] <= SMALL.max_seq_length


def test_a_question_leaving_no_room_for_the_stride_is_a_clear_error_not_a_tokenizer_panic(tokenizer):
    """max_seq_length - question - special tokens must exceed doc_stride, or windows cannot advance:
    the Rust tokenizer would abort with a PanicException (a BaseException no caller expects)."""
    context = "The answer is here. " * 30
    question = "Which of these many words " + "really " * 30 + "matter?"
    examples = [QAExample("fine", "t", context, "Where is it?", (Answer("answer", 4),)),
                QAExample("q-long", "t", context, question, (Answer("answer", 4),))]
    config = FeatureConfig(max_seq_length=48, doc_stride=16, max_query_length=64)
    with pytest.raises(ValueError, match=r"q-long.*doc_stride \(16\).*max_seq_length \(48\)"):
        build_features(examples, tokenizer, config, training=False)
    # the same question cut to max_query_length leaves room: no error
    build_features(examples, tokenizer, FeatureConfig(max_seq_length=48, doc_stride=16, max_query_length=8),
                   training=False)


def test_window_lengths_reach_the_last_real_token_whichever_side_is_padded():
    from lit_rcqa.data.features import window_lengths

    g = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(50):
        width = int(torch.randint(1, 12, (1,), generator=g))
        real = int(torch.randint(1, width + 1, (1,), generator=g))
        left = int(torch.randint(0, width - real + 1, (1,), generator=g))  # padding before, then after
        rows.append([0] * left + [1] * real + [0] * (width - real - left))
    width = max(map(len, rows))
    mask = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    expected = [max(i for i, m in enumerate(r) if m) + 1 for r in rows]
    assert window_lengths(mask) == expected
