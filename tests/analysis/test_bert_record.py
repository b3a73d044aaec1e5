"""Every analysis on one record laid out exactly as the IG writer stores it, tokenised by the embedded BERT."""

import numpy as np

from lit_rcqa.analysis.divergence import JSDAccumulator
from lit_rcqa.analysis.embeddings import record_categories
from lit_rcqa.analysis.evidence import record_evidence_share
from lit_rcqa.analysis.quantifiers import is_quantifier_question, record_numeric_hits
from lit_rcqa.analysis.roles import record_role_counts
from lit_rcqa.analysis.words import answer_word_indices, record_words
from lit_rcqa.attribution.record import AttributionRecord, layer_name

QUESTION = "How many points did the Broncos' defence allow in Super Bowl 50?"
CONTEXT = "The Broncos' defence allowed only ten points. Carolina's unaffable quarterback threw 1,000 yards."


def _record(tokenizer) -> AttributionRecord:
    enc = tokenizer(QUESTION, CONTEXT, return_offsets_mapping=True)
    seq = enc.sequence_ids()
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    offsets = np.array([o if s == 1 else (-1, -1) for o, s in zip(enc["offset_mapping"], seq)], dtype=np.int64)
    passage = [i for i, s in enumerate(seq) if s == 1]
    answer = [i for i in passage if CONTEXT[offsets[i, 0]:offsets[i, 1]] == "ten"]
    imp = np.random.default_rng(0).random((3, len(tokens))).astype(np.float32)
    imp[2, answer[0]] = 100.0  # the last layer looks at the answer
    return AttributionRecord(
        example_id="q1", question=QUESTION, context=CONTEXT, tokens=tokens, offsets=offsets,
        passage_start=passage[0], passage_end=passage[-1] + 1, layers=[layer_name(i) for i in range(3)],
        importance=imp, signed=imp.copy(), delta=np.zeros(3), steps=np.full(3, 50, dtype=np.int32),
        pred_start=answer[0], pred_end=answer[0], pred_text="ten", start_prob=0.7, end_prob=0.6,
        evidence_span=(0, CONTEXT.index("Carolina")))


def test_all_analyses_on_a_real_bert_record(tokenizer):
    rec = _record(tokenizer)
    assert any(t.startswith("##") for t in rec.tokens[rec.passage_start:rec.passage_end])
    words = record_words(rec)
    assert words.words == CONTEXT.split()
    assert [words.words[i] for i in answer_word_indices(words, rec)] == ["ten"]

    counts = record_role_counts(rec, k=5, window=5)
    assert counts.shape == (3, 4) and (counts.sum(axis=1) == 5).all()
    assert counts[2, 0] == 1  # the answer word is in the last layer's top-5

    assert is_quantifier_question(rec.question)
    hits, n_numeric, _ = record_numeric_hits(rec)
    assert n_numeric == 1  # "1,000." (the answer "ten" is excluded)

    acc = JSDAccumulator(layers=rec.layers)
    acc.add(rec)
    assert acc.mean()[0, 2] > 0

    share = record_evidence_share(rec)
    assert ((share > 0) & (share < 1)).all() and share[2] > 0.9

    cats = record_categories(rec)
    assert cats[0] == "special" and cats[rec.pred_start] == "answer"
    assert {cats[i] for i in range(1, rec.passage_start - 1)} == {"question"}
    first_sentence_end = CONTEXT.index("Carolina")
    for i in range(rec.passage_start, rec.passage_end):
        if i != rec.pred_start:
            expected = "context" if rec.offsets[i, 0] < first_sentence_end else "other"
            assert cats[i] == expected, rec.tokens[i]
