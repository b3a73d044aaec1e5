"""Windowed QA features for any Hugging Face fast tokenizer, and per-batch dynamic padding.

One code path serves training and evaluation: examples -> (1) questions truncated to
`max_query_length` tokens -> (2) one batched tokenizer call that cuts each context into overlapping
windows -> (3) per window: context token range, offsets (None outside the context), max-context
flags, gold start/end labels (CLS when the answer is absent or not fully inside the window).

    from lit_rcqa.data.features import FeatureConfig, build_features
    features = build_features(examples, tokenizer, FeatureConfig(), training=False)
"""

from __future__ import annotations

import bisect
import copy
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_rcqa.data.example import QAExample
from lit_rcqa.data.windows import DEFAULT_WINDOWS

_START = itemgetter(0)
_END = itemgetter(1)


@dataclass(frozen=True)
class FeatureConfig:
    max_seq_length: int = DEFAULT_WINDOWS.max_seq_length  # tokens per window, special tokens included
    doc_stride: int = DEFAULT_WINDOWS.doc_stride  # tokens shared by consecutive windows of one context (HF `stride`)
    max_query_length: int = DEFAULT_WINDOWS.max_query_length  # longer questions keep their first tokens
    pad_to_max_length: bool = DEFAULT_WINDOWS.pad_to_max_length  # False: pad per batch in `collate_features`


@dataclass
class Features:
    """Per-feature (per-window) lists, all of the same length; index i is feature i."""

    input_ids: list[list[int]]
    attention_mask: list[list[int]]
    token_type_ids: list[list[int]] | None  # None when the tokenizer has no token types (RoBERTa)
    offsets: list[list[tuple[int, int] | None]]  # char span in the context; None outside it
    token_is_max_context: list[list[bool]]  # True where this window gives the token most context
    example_index: list[int]  # position of the feature's example in the examples list
    start_positions: list[int]  # gold start token (first answer), CLS index when not in window
    end_positions: list[int]
    cls_index: list[int]  # where the CLS token is (0 for BERT/RoBERTa): the "no answer" position

    def __len__(self) -> int:
        return len(self.input_ids)


def build_features(examples: Sequence[QAExample], tokenizer: Any, config: FeatureConfig = FeatureConfig(), *,
                   training: bool) -> Features:
    """Tokenise `examples` into sliding windows with labels, offsets and max-context flags.

    `training=True` additionally requires every example to have a located gold answer or to be
    unanswerable, since a window without a usable label would silently teach "no answer".
    """
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("build_features needs a fast (Rust) tokenizer for offsets and overflowing windows")
    if training:
        for ex in examples:
            if not ex.is_impossible and (not ex.answers or ex.answers[0].answer_start < 0):
                raise ValueError(f"training example {ex.id!r} has no located answer and is not marked impossible")
    # The question goes first for right-padding tokenizers (BERT, RoBERTa), after the context otherwise.
    question_first = tokenizer.padding_side == "right"

    # Steps 1-3 (`_encode`): tokenise, cut questions to max_query_length tokens, make the windows.
    questions = [ex.question.lstrip() for ex in examples]  # some SQuAD questions start with spaces
    cols = _encode(questions, [ex.context for ex in examples], tokenizer, config, question_first,
                   names=[ex.id for ex in examples])

    # Step 4: per example, its consecutive windows: context range, offsets, CLS, max-context, labels.
    input_ids, sample_map, raw_offsets = cols["input_ids"], cols["sample_map"], cols["offsets"]
    prefix, middle, suffix = _pair_layout(tokenizer)
    left_padded = tokenizer.padding_side == "left"
    cls_id = tokenizer.cls_token_id
    n_feat = len(input_ids)
    offsets: list[list] = [None] * n_feat  # type: ignore[list-item]
    max_ctx: list[list[bool]] = [None] * n_feat  # type: ignore[list-item]
    starts = [0] * n_feat
    ends = [0] * n_feat
    cls_index = [0] * n_feat
    f = 0
    while f < n_feat:
        e = sample_map[f]
        g = f + 1
        while g < n_feat and sample_map[g] == e:
            g += 1
        q_len = cols["question_len"][e]
        spans = []  # (first, last) context token position of each window of this example
        for i in range(f, g):
            ids = input_ids[i]
            n = len(ids)
            n_real = sum(cols["attention_mask"][i]) if config.pad_to_max_length else n
            shift = n - n_real if left_padded else 0
            if question_first:  # [prefix] question [middle] context [suffix]
                lo, hi = shift + prefix + q_len + middle, shift + n_real - suffix - 1
            else:  # [prefix] context [middle] question [suffix]
                lo = shift + prefix
                hi = lo + n_real - prefix - middle - suffix - q_len - 1
            spans.append((lo, hi))
            offsets[i] = [None] * lo + raw_offsets[i][lo:hi + 1] + [None] * (n - 1 - hi)
            if ids[0] != cls_id:
                cls_index[i] = ids.index(cls_id) if cls_id is not None and cls_id in ids else 0
        max_ctx[f:g] = _max_context_flags(spans, input_ids[f:g], config.doc_stride)
        ex = examples[e]
        answer = ex.answers[0] if ex.answers and not ex.is_impossible else None
        for i, (lo, hi) in zip(range(f, g), spans):
            starts[i] = ends[i] = cls_index[i]
            if answer is None or answer.answer_start < 0:
                continue
            a_start, a_end = answer.answer_start, answer.answer_start + len(answer.text)
            row = offsets[i]
            if row[lo][0] > a_start or row[hi][1] < a_end:
                continue  # the answer is not fully inside this window
            # Last context token starting at or before the answer; first one ending at or after it.
            starts[i] = bisect.bisect_right(row, a_start, lo, hi + 1, key=_START) - 1
            ends[i] = bisect.bisect_left(row, a_end, lo, hi + 1, key=_END)
        f = g

    return Features(
        input_ids=input_ids,
        attention_mask=cols["attention_mask"],
        token_type_ids=cols.get("token_type_ids"),
        offsets=offsets,
        token_is_max_context=max_ctx,
        example_index=sample_map,
        start_positions=starts,
        end_positions=ends,
        cls_index=cls_index,
    )


def _encode(questions: list[str], contexts: list[str], tokenizer: Any, config: FeatureConfig,
            question_first: bool, names: Sequence[str] | None = None) -> dict[str, list]:
    """Windows of every (question, context) pair -> per-window columns, as the tokenizer's own
    overflowing pair encoding gives them (`tests/data/test_features.py` checks they are equal).

    Faster than one pair call per example: each distinct context (SQuAD has ~5 questions per
    paragraph) is tokenised once, then the tokenizer's post-processor truncates each pair into
    windows of `max_seq_length` sharing `doc_stride` tokens and adds the special tokens.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TypeError(f"{type(tokenizer).__name__} has no Rust backend tokenizer (need a fast tokenizer)")
    backend = copy.deepcopy(backend)  # our own copy: its truncation/padding settings are ours to set
    backend.no_truncation()
    backend.no_padding()
    # Step 1 must not post-process: some processors change offsets on every pass (RoBERTa trims
    # the space before a token), so the texts are tokenised bare and post-processed once, in step 3.
    processor, backend.post_processor = backend.post_processor, None
    if len(backend.encode("", add_special_tokens=False).ids) != 0:
        raise TypeError("tokenizer turns the empty string into tokens; cannot tokenise contexts on their own")

    # Step 1: tokenise each text as its side of a pair with an empty partner, (text, "") or ("", text),
    # so its tokens carry that side's token type in every window, as in a pair call. (The windows'
    # sequence ids are not reliable on this path, so build_features finds the context by layout.)
    def encode(texts: list[str], position: int) -> list:
        pairs = [("", t) for t in texts] if position == 1 else [(t, "") for t in texts]
        return backend.encode_batch(pairs, add_special_tokens=False)

    q_pos, c_pos = (0, 1) if question_first else (1, 0)
    distinct: dict[str, int] = {}
    context_of = [distinct.setdefault(c, len(distinct)) for c in contexts]
    context_encs = encode(list(distinct), c_pos)
    question_encs = encode(questions, q_pos)

    # Step 2: a question over max_query_length tokens keeps its first max_query_length tokens: cut
    # the text after that token and re-tokenise (shorter still if the cut text merges differently).
    long = [e for e, enc in enumerate(question_encs) if len(enc.ids) > config.max_query_length]
    while long:
        for e in long:
            cut = question_encs[e].offsets[config.max_query_length - 1][1]
            questions[e] = questions[e][:min(cut, len(questions[e]) - 1)]
        for e, enc in zip(long, encode([questions[e] for e in long], q_pos)):
            question_encs[e] = enc
        long = [e for e in long if len(question_encs[e].ids) > config.max_query_length]

    # Step 3: windows: truncate the context with overlap, add special tokens, pad if asked.
    backend.post_processor = processor
    backend.enable_truncation(config.max_seq_length, stride=config.doc_stride,
                              strategy="only_second" if question_first else "only_first")
    if config.pad_to_max_length:
        backend.enable_padding(length=config.max_seq_length, direction=tokenizer.padding_side,
                               pad_id=tokenizer.pad_token_id, pad_type_id=tokenizer.pad_token_type_id,
                               pad_token=tokenizer.pad_token)
    with_types = "token_type_ids" in tokenizer.model_input_names
    cols: dict[str, list] = {key: [] for key in ("input_ids", "attention_mask", "token_type_ids", "offsets",
                                                 "sample_map")}
    cols["question_len"] = [len(enc.ids) for enc in question_encs]  # per example
    # Each window holds max_seq_length - question - special tokens of context and advances by that
    # minus doc_stride: with no room left the Rust tokenizer panics (a BaseException), so say why here.
    n_special = processor.num_special_tokens_to_add(True) if processor is not None else 0
    for e, q_len in enumerate(cols["question_len"]):
        room = config.max_seq_length - q_len - n_special
        if room <= config.doc_stride:
            name = names[e] if names is not None else e
            raise ValueError(
                f"question {name!r}: its {q_len} tokens and {n_special} special tokens leave {max(room, 0)} context "
                f"tokens per window, not more than doc_stride ({config.doc_stride}); raise max_seq_length "
                f"({config.max_seq_length}) or lower max_query_length ({config.max_query_length}) or doc_stride")
    for e, q_enc in enumerate(question_encs):
        c_enc = context_encs[context_of[e]]
        first = backend.post_process(q_enc, c_enc) if question_first else backend.post_process(c_enc, q_enc)
        for window in [first, *first.overflowing]:
            cols["input_ids"].append(window.ids)
            cols["attention_mask"].append(window.attention_mask)
            if with_types:
                cols["token_type_ids"].append(window.type_ids)
            cols["offsets"].append(window.offsets)
            cols["sample_map"].append(e)
    if not with_types:
        del cols["token_type_ids"]
    return cols


def _pair_layout(tokenizer: Any) -> tuple[int, int, int]:
    """How many special tokens the tokenizer puts before, between and after the two sequences of a
    pair (BERT [CLS] a [SEP] b [SEP]: 1, 1, 1; RoBERTa <s> a </s></s> b </s>: 1, 2, 1)."""
    enc = tokenizer("a", "b")
    seq = enc.sequence_ids(0)
    a_end = len(seq) - 1 - seq[::-1].index(0)
    b_start, b_end = seq.index(1), len(seq) - 1 - seq[::-1].index(1)
    return seq.index(0), b_start - a_end - 1, len(seq) - 1 - b_end


def _max_context_flags(spans: list[tuple[int, int]], ids: list[list[int]], stride: int) -> list[list[bool]]:
    """Google BERT's `_check_is_max_context` for all windows of one context at once.

    A context token is scored in the window maximising min(left context, right context) + 0.01 *
    window length; ties go to the earliest window. Non-context positions are False.
    """
    if len(spans) == 1:
        lo, hi = spans[0]
        return [[False] * lo + [True] * (hi - lo + 1) + [False] * (len(ids[0]) - 1 - hi)]
    # Where each window starts in the whole context's token sequence: consecutive windows share
    # `stride` tokens, so window k starts `len(window k-1) - overlap` tokens after window k-1.
    doc_start = [0]
    for k in range(1, len(spans)):
        (plo, phi), (lo, hi) = spans[k - 1], spans[k]
        prev, cur = ids[k - 1][plo:phi + 1], ids[k][lo:hi + 1]
        step = _window_step(prev, cur, stride)
        doc_start.append(doc_start[-1] + step)
    n_ctx = np.array([hi - lo + 1 for lo, hi in spans])
    starts = np.array(doc_start)
    doc_len = int((starts + n_ctx).max())
    pos = np.arange(doc_len)
    rel = pos[None, :] - starts[:, None]  # [windows, doc tokens]
    inside = (rel >= 0) & (rel < n_ctx[:, None])
    score = np.minimum(rel, n_ctx[:, None] - 1 - rel) + 0.01 * n_ctx[:, None]
    best = np.where(inside, score, -np.inf).argmax(axis=0)  # first maximum = earliest window
    out = []
    for k, (lo, hi) in enumerate(spans):
        flags = (best[starts[k]:starts[k] + n_ctx[k]] == k).tolist()
        out.append([False] * lo + flags + [False] * (len(ids[k]) - 1 - hi))
    return out


def _window_step(prev: list[int], cur: list[int], stride: int) -> int:
    """How many tokens window k starts after window k-1 (their shared tokens must agree)."""
    expected = len(prev) - stride  # the tokenizer's overflow rule: windows share `stride` tokens
    if 0 < expected and prev[expected:] == cur[:stride]:
        return expected
    for step in range(1, len(prev) + 1):  # any other tokenizer behaviour: smallest consistent shift
        overlap = len(prev) - step
        if prev[step:] == cur[:overlap]:
            return step
    return len(prev)


class QAFeatureDataset(Dataset):
    """Feature i as a dict of python lists/ints, with its `feature_index`, for `collate_features`."""

    def __init__(self, features: Features):
        self.features = features

    def __len__(self) -> int:
        return len(self.features.input_ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        f = self.features
        item = {
            "input_ids": f.input_ids[i],
            "attention_mask": f.attention_mask[i],
            "start_positions": f.start_positions[i],
            "end_positions": f.end_positions[i],
            "feature_index": i,
        }
        if f.token_type_ids is not None:
            item["token_type_ids"] = f.token_type_ids[i]
        return item


def window_lengths(attention_mask: torch.Tensor) -> list[int]:
    """Per row of a batch [B, T]: how many leading positions are the window's own, i.e. up to its last real token.

    Post-processing reads a window's logits by position (through its offsets), so they are kept from position 0:
    a left-padding tokenizer's padding stays in (it is masked, never chosen), the collate's right padding goes."""
    positions = torch.arange(1, attention_mask.shape[1] + 1, device=attention_mask.device)
    return (attention_mask.to(positions.dtype) * positions).amax(dim=1).tolist()


def collate_features(batch: list[dict[str, Any]], pad_token_id: int, pad_to: int | None = None) -> dict[str, torch.Tensor]:
    """Right-pad a batch to its longest feature (or to `pad_to`), as LongTensors."""
    longest = max(len(item["input_ids"]) for item in batch)
    width = longest if pad_to is None else max(pad_to, longest)
    out: dict[str, torch.Tensor] = {}
    for key, pad in (("input_ids", pad_token_id), ("attention_mask", 0), ("token_type_ids", 0)):
        if key not in batch[0]:
            continue
        rows = [item[key] + [pad] * (width - len(item[key])) for item in batch]
        out[key] = torch.tensor(rows, dtype=torch.long)  # [B, T]
    for key in ("start_positions", "end_positions", "feature_index"):
        out[key] = torch.tensor([item[key] for item in batch], dtype=torch.long)  # [B]
    return out
