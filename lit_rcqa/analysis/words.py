"""Word-level importances: merge a tokenizer's pieces into the passage's words via char offsets.

The paper ranks words, not WordPiece pieces. Merging by offsets works for any tokenizer (BERT's `##`
pieces, byte-level BPE's `Ġ` pieces, SentencePiece): pieces with no whitespace between them in the
context form one word. A word's importance is the sum of its pieces', renormalised over the passage.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np

from lit_rcqa.analysis.divergence import normalize
from lit_rcqa.attribution.record import AttributionRecord


@dataclass
class PassageWords:
    words: list[str]            # word strings cut from the context
    spans: np.ndarray           # [W, 2] int64 char spans into the context
    importance: np.ndarray      # [n_layers, W] float64, each row sums to 1 over the passage's words
    token_word: np.ndarray      # [P] int64 word index of each passage token; -1 for tokens with no span


def _is_punctuation(text: str) -> bool:
    return all(unicodedata.category(ch).startswith("P") for ch in text)


def merge_words(context: str, offsets: np.ndarray, importance: np.ndarray, *,
                split_punctuation: bool = False) -> PassageWords:
    """Group passage tokens into words and sum their importances.

    offsets: [P, 2] char spans into `context`, start < 0 for tokens with no span (they are skipped);
    importance: [n_layers, P] raw non-negative scores.
    Words are split at whitespace in the context. A piece that is only whitespace or has an empty
    span (BPE's lone `Ġ`, with or without trimmed offsets) belongs to the word that follows it. With `split_punctuation`, a piece made only of punctuation
    is a word of its own (closer to the seed, which merged only `##` pieces).
    """
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)  # [P, 2]
    importance = np.atleast_2d(np.asarray(importance, dtype=np.float64))  # [L, P]
    if importance.shape[1] != len(offsets):
        raise ValueError(f"importance has {importance.shape[1]} tokens but offsets has {len(offsets)}")
    token_word = np.full(len(offsets), -1, dtype=np.int64)
    spans: list[list[int]] = []
    pending: list[int] = []        # whitespace-only pieces waiting for the next word
    prev_punct = False
    valid = [i for i, (s, e) in enumerate(offsets) if 0 <= s <= e <= len(context)]
    for i in sorted(valid, key=lambda j: (offsets[j][0], j)):
        s, e = int(offsets[i][0]), int(offsets[i][1])
        piece = context[s:e]
        text = piece.strip()
        if not text:
            pending.append(i)
            continue
        # 1. trim the piece to its visible characters (byte-level BPE offsets may include the space)
        s += len(piece) - len(piece.lstrip())
        e -= len(piece) - len(piece.rstrip())
        punct = split_punctuation and _is_punctuation(text)
        # 2. a new word starts after whitespace, or around a punctuation piece when asked
        gap = context[spans[-1][1]:s] if spans else " "
        if not spans or any(ch.isspace() for ch in gap) or punct or prev_punct:
            spans.append([s, e])
        else:
            spans[-1][1] = max(spans[-1][1], e)
        prev_punct = punct
        token_word[[*pending, i]] = len(spans) - 1
        pending = []
    if pending and spans:
        token_word[pending] = len(spans) - 1
    n_words = len(spans)
    word_imp = np.zeros((importance.shape[0], n_words))  # [L, W]
    mapped = token_word >= 0
    np.add.at(word_imp.T, token_word[mapped], importance[:, mapped].T)
    span_arr = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    return PassageWords(words=[context[s:e] for s, e in span_arr], spans=span_arr,
                        importance=normalize(word_imp) if n_words else word_imp, token_word=token_word)


def record_words(record: AttributionRecord, *, split_punctuation: bool = False) -> PassageWords:
    """The passage words of one record with their per-layer importances."""
    p = slice(record.passage_start, record.passage_end)
    return merge_words(record.context, record.offsets[p], record.importance[:, p],
                       split_punctuation=split_punctuation)


def span_word_indices(words: PassageWords, first_token: int, last_token: int) -> np.ndarray:
    """Sorted unique word indices covered by passage tokens first_token..last_token (inclusive)."""
    idx = words.token_word[max(first_token, 0):last_token + 1]
    return np.unique(idx[idx >= 0])


def answer_word_indices(words: PassageWords, record: AttributionRecord) -> np.ndarray:
    """Word indices of the record's predicted answer span."""
    return span_word_indices(words, record.pred_start - record.passage_start,
                             record.pred_end - record.passage_start)


def top_word_indices(importance: np.ndarray, k: int) -> np.ndarray:
    """[n_layers, W] -> [n_layers, min(k, W)] indices of each layer's k most important words."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return np.argsort(-np.asarray(importance), axis=-1, kind="stable")[..., :k]
