"""The per-example result of layer-wise Integrated Gradients: what the prediction loop returns
(`AttributionSystem.predict_step`), what the store writes and reads back, and what every analysis consumes.

Layer names are canonical everywhere (files, tables, figure labels, CLI): index 0 is
`embeddings`, index i >= 1 is `layer_{i:02d}` (the output of encoder layer i).

How a field is stored follows from its declaration (`lit_rcqa.attribution.store` reads it from here):
an `array(...)` field goes into the shard's tensor file with that dtype and shape (n = layers, T = tokens),
`hidden` into the shard's hidden-state file, every other field into the shard's JSON sidecar under its own
name (or `key`). A field with a default (and not `REQUIRED`) may be missing from older shards and reads as
that default. Adding a
field is this one edit, plus `store.SCHEMA_VERSION` + 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def layer_name(index: int) -> str:
    return "embeddings" if index == 0 else f"layer_{index:02d}"


def array(dtype: str, *shape: str, required: bool = False, **kwargs: Any) -> Any:
    """A per-example array field, stored as `dtype` with `shape` in terms of n (layers), T (tokens), literals.
    `required`: a stored record must have it even though records built in memory may leave it out."""
    return field(metadata={"array": (dtype, shape), "required": required}, **kwargs)


REQUIRED = {"required": True}  # metadata of a field with a default that every stored record has nonetheless


@dataclass
class AttributionRecord:
    example_id: str = field(metadata={"key": "id"})
    question: str
    context: str
    tokens: list[str]          # "[CLS] question [SEP] passage [SEP]" pieces of the scored window, real tokens only
    offsets: np.ndarray = array("int64", "T", "2")  # [T, 2] char offsets into `context` (passage), else -1
    passage_start: int         # token index of the first passage token (right after the first [SEP])
    passage_end: int           # token index one past the last passage token (the final [SEP])
    layers: list[str]          # canonical names of the scored layers, in order
    importance: np.ndarray = array("float32", "n", "T")  # [n_layers, T] L2 norm of IG over the hidden dim (raw)
    signed: np.ndarray = array("float32", "n", "T")      # [n_layers, T] sum of IG over the hidden dimension
    delta: np.ndarray = array("float64", "n")  # [n_layers] |sum IG - (F(h) - F(b))| / |F(h) - F(b)|
    steps: np.ndarray = array("int32", "n")    # [n_layers] integration steps used per layer
    pred_start: int            # token index (inclusive) of the explained span's start
    pred_end: int              # token index (inclusive) of the explained span's end
    pred_text: str
    start_prob: float          # softmax(start_logits)[pred_start]
    end_prob: float            # softmax(end_logits)[pred_end]
    gold_texts: tuple[str, ...] = field(default=(), metadata=REQUIRED)
    # [T] ids of `tokens` (decision flips re-run the model on them)
    input_ids: np.ndarray | None = array("int64", "T", required=True, default=None)
    token_type_ids: np.ndarray | None = array("int64", "T", default=None)  # [T]; None: no segment ids
    evidence_span: tuple[int, int] | None = None  # synthetic set: char span of the supporting sentence
    # [n_layers] δ met the accuracy target (None: a fixed rule, no target)
    converged: np.ndarray | None = array("bool", "n", default=None)
    position: int = field(default=-1, metadata=REQUIRED)  # index in the dev split: the order of all outputs
    nbest_probability: float | None = None  # the top n-best answer's probability (confidence); None: unknown
    target_value: float | None = None     # F(h) at the real input
    window: int | None = None             # index of the explained window (feature) among the example's windows
    explained: str | None = None          # which span was explained: "predicted", "gold", ...
    # [n_layers, T, d] h_ℓ of the first N examples (t-SNE): written to the shard's hidden-state file and read
    # lazily with `store.load_hidden`, so None in the records the store returns.
    hidden: np.ndarray | None = field(default=None, metadata={"hidden": True})
