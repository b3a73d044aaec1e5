"""The per-example result of layer-wise Integrated Gradients, as the store returns it.

Layer names are canonical everywhere (files, tables, figure labels, CLI): index 0 is
`embeddings`, index i >= 1 is `layer_{i:02d}` (the output of encoder layer i).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def layer_name(index: int) -> str:
    return "embeddings" if index == 0 else f"layer_{index:02d}"


@dataclass
class AttributionRecord:
    example_id: str
    question: str
    context: str
    tokens: list[str]          # "[CLS] question [SEP] passage [SEP]" pieces of the scored window, real tokens only
    offsets: np.ndarray        # [T, 2] int64 char offsets into `context` for passage tokens; (-1, -1) otherwise
    passage_start: int         # token index of the first passage token (right after the first [SEP])
    passage_end: int           # token index one past the last passage token (the final [SEP])
    layers: list[str]          # canonical names of the scored layers, in order
    importance: np.ndarray     # [n_layers, T] float32: L2 norm of IG over the hidden dimension (raw, not normalised)
    signed: np.ndarray         # [n_layers, T] float32: sum of IG over the hidden dimension
    delta: np.ndarray          # [n_layers] float64: completeness gap |sum IG - (F(h) - F(b))| / |F(h) - F(b)|
    steps: np.ndarray          # [n_layers] int32: integration steps used per layer
    pred_start: int            # token index (inclusive) of the explained span's start
    pred_end: int              # token index (inclusive) of the explained span's end
    pred_text: str
    start_prob: float          # softmax(start_logits)[pred_start]
    end_prob: float            # softmax(end_logits)[pred_end]
    gold_texts: tuple[str, ...] = ()
    input_ids: np.ndarray | None = None       # [T] int64 ids of `tokens` (decision flips re-run the model on them)
    token_type_ids: np.ndarray | None = None  # [T] int64, None for encoders without segment ids
    evidence_span: tuple[int, int] | None = None  # synthetic set: char span of the supporting sentence
    converged: np.ndarray | None = None       # [n_layers] bool: δ met the accuracy target (None: fixed rule, no target)
