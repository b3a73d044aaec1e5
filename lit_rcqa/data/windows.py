"""How a question and its context become model windows: the defaults train.py's data module and predict.py share.

Kept free of torch and Lightning, so that `lit_rcqa.predict`'s settings import without them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WindowSettings:
    """Windowing of long contexts, and how many windows are scored at once (the paper's values).

    Args:
        max_seq_length: Tokens per window (question, context and special tokens).
        doc_stride: Context tokens by which consecutive windows of a long context overlap; below max_seq_length.
        max_query_length: Questions are cut to this many tokens.
        pad_to_max_length: Pad every batch to max_seq_length (by default a batch is padded to its longest).
        eval_batch_size: Windows per forward pass when scoring.
    """

    max_seq_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64
    pad_to_max_length: bool = False
    eval_batch_size: int = 64


DEFAULT_WINDOWS = WindowSettings()
