"""Hand-built AttributionRecords for analysis tests: whitespace words, one token per word."""

from __future__ import annotations

import numpy as np

from lit_rcqa.attribution.record import AttributionRecord, layer_name


def make_record(question: str, context: str, passage_importance, *, pred_words: tuple[int, int] = (0, 0),
                evidence_span: tuple[int, int] | None = None, example_id: str = "ex") -> AttributionRecord:
    """"[CLS] q-words [SEP] context-words [SEP]", one token per whitespace word of the context.

    `passage_importance` is [n_layers, n_context_words]; special and question tokens get importance 1
    (they must never count towards passage analyses). `pred_words` are inclusive word indices.
    """
    imp = np.asarray(passage_importance, dtype=np.float32)
    q_tokens = question.split()
    words, offsets, pos = context.split(), [], 0
    for w in words:
        start = context.index(w, pos)
        offsets.append((start, start + len(w)))
        pos = start + len(w)
    tokens = ["[CLS]", *q_tokens, "[SEP]", *words, "[SEP]"]
    passage_start = len(q_tokens) + 2
    n_layers, T = imp.shape[0], len(tokens)
    full = np.ones((n_layers, T), dtype=np.float32)
    full[:, passage_start:passage_start + len(words)] = imp
    off = np.full((T, 2), -1, dtype=np.int64)
    off[passage_start:passage_start + len(words)] = offsets
    s, e = pred_words
    return AttributionRecord(
        example_id=example_id, question=question, context=context, tokens=tokens, offsets=off,
        passage_start=passage_start, passage_end=passage_start + len(words),
        layers=[layer_name(i) for i in range(n_layers)], importance=full, signed=full.copy(),
        delta=np.zeros(n_layers), steps=np.full(n_layers, 50, dtype=np.int32),
        pred_start=passage_start + s, pred_end=passage_start + e,
        pred_text=context[offsets[s][0]:offsets[e][1]], start_prob=0.9, end_prob=0.8,
        evidence_span=evidence_span)
