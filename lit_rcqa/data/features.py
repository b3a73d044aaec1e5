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
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_rcqa.data.example import QAExample

_START = itemgetter(0)
_END = itemgetter(1)


@dataclass(frozen=True)
class FeatureConfig:
    max_seq_length: int = 384  # tokens per window, special tokens included (paper, Google BERT)
    doc_stride: int = 128  # tokens shared by consecutive windows of one context (HF `stride`)
    max_query_length: int = 64  # longer questions keep their first 64 tokens (as Google BERT)
    pad_to_max_length: bool = False  # False: pad per batch in `collate_features` (less compute)


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
    q_seq, c_seq = (0, 1) if question_first else (1, 0)

    # Step 1: one batched call; the tokenizer cuts each context into windows sharing `doc_stride` tokens.
    questions = [ex.question.lstrip() for ex in examples]  # some SQuAD questions start with spaces
    contexts = [ex.context for ex in examples]
    cols = _encode(questions, contexts, tokenizer, config, question_first)

    # Step 2: questions over max_query_length tokens keep their first max_query_length tokens. Rare
    # (none in SQuAD dev or our train subset), so they are found afterwards and only they re-encoded.
    while True:
        too_long = _long_questions(cols, questions, q_seq, config.max_query_length)
        if not too_long:
            break
        for e, cut in too_long.items():
            questions[e] = questions[e][:cut]
        redo = sorted(too_long)
        sub = _encode([questions[e] for e in redo], [contexts[e] for e in redo], tokenizer, config, question_first)
        cols = _splice(cols, sub, redo)

    # Step 3: per example, its consecutive windows: offsets, CLS, max-context flags, labels.
    input_ids, sample_map, raw_offsets, seq_ids = cols["input_ids"], cols["sample_map"], cols["offsets"], cols["seq_ids"]
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
        spans = []  # (first, last) context token position of each window of this example
        for i in range(f, g):
            seq, ids = seq_ids[i], input_ids[i]
            n = len(seq)
            lo = seq.index(c_seq)
            try:
                hi = seq.index(None, lo) - 1  # the context ends at the next special/pad token
            except ValueError:
                hi = n - 1
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
            question_first: bool) -> dict[str, list]:
    """One batched tokenizer call -> per-window columns (ids, mask, types, offsets, sample map, sequence ids)."""
    first, second = (questions, contexts) if question_first else (contexts, questions)
    enc = tokenizer(
        first, second,
        truncation="only_second" if question_first else "only_first",
        max_length=config.max_seq_length,
        stride=config.doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length" if config.pad_to_max_length else False,
    )
    cols = {
        "input_ids": enc["input_ids"],
        "attention_mask": enc["attention_mask"],
        "offsets": enc["offset_mapping"],
        "sample_map": list(enc["overflow_to_sample_mapping"]),
        "seq_ids": [enc.sequence_ids(i) for i in range(len(enc["input_ids"]))],
    }
    if "token_type_ids" in enc:
        cols["token_type_ids"] = enc["token_type_ids"]
    return cols


def _long_questions(cols: dict[str, list], questions: list[str], q_seq: int, max_query_length: int) -> dict[int, int]:
    """{example: character cut} for questions with more than `max_query_length` tokens."""
    out = {}
    prev = -1
    for i, e in enumerate(cols["sample_map"]):
        if e == prev:
            continue  # every window of an example holds the same question tokens
        prev = e
        seq = cols["seq_ids"][i]
        if seq.count(q_seq) > max_query_length:
            first_q = seq.index(q_seq)
            out[e] = cols["offsets"][i][first_q + max_query_length - 1][1]
            if out[e] >= len(questions[e]):  # re-tokenising the cut merged differently: drop a character
                out[e] = len(questions[e]) - 1
    return out


def _splice(cols: dict[str, list], sub: dict[str, list], redo: list[int]) -> dict[str, list]:
    """`cols` with the windows of examples `redo` replaced by theirs in `sub` (encoded in that order)."""
    new_windows: dict[int, list[int]] = {}
    for j, local in enumerate(sub["sample_map"]):
        new_windows.setdefault(redo[local], []).append(j)
    out: dict[str, list] = {key: [] for key in cols}
    sample_map = cols["sample_map"]
    for i, e in enumerate(sample_map):
        if e not in new_windows:
            for key in out:
                out[key].append(cols[key][i])
        elif i == 0 or sample_map[i - 1] != e:  # first old window of a redone example: put all new ones
            for j in new_windows[e]:
                for key in out:
                    out[key].append(e if key == "sample_map" else sub[key][j])
    return out


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
