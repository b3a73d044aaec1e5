"""Synthetic diagnostic set: deterministic, exact answers, known evidence, same-type distractors."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from lit_rcqa.data.synthetic import (QUESTION_TYPES, make_synthetic, make_synthetic_questions, make_synthetic_splits,
                                     question_type)
from lit_rcqa.errors import UserError

STOPWORDS = {"the", "a", "of", "in", "to", "did", "was", "what", "who", "whom", "when", "where", "which", "how",
             "many", "much", "and", "at", "for", "with", "by", "from", "its", "that", "were", "had"}


@pytest.fixture(scope="module")
def questions():
    return make_synthetic_questions(600, seed=7)


def sentences_with_spans(context: str) -> list[tuple[int, int]]:
    """Sentence spans found independently of the generator: split after each full stop."""
    spans, start = [], 0
    for sentence in re.split(r"(?<=\.) ", context):
        spans.append((start, start + len(sentence)))
        start += len(sentence) + 1
    return spans


def test_same_seed_same_examples_other_seed_other_examples():
    assert make_synthetic(40, seed=3) == make_synthetic(40, seed=3)
    assert [e.context for e in make_synthetic(40, seed=3)] != [e.context for e in make_synthetic(40, seed=4)]


def test_ids_count_and_form():
    examples = make_synthetic(7, seed=1)
    assert [e.id for e in examples] == [f"syn-{i:06d}" for i in range(7)]
    assert make_synthetic(0) == []


def test_answers_index_their_context_exactly(questions):
    for q in questions:
        e = q.example
        assert len(e.answers) == 1 and not e.is_impossible
        a = e.answers[0]
        assert a.text and e.context[a.answer_start:a.answer_start + len(a.text)] == a.text
        assert a.text.lower() not in e.question.lower()


def test_evidence_sentence_and_span_hold_the_answer(questions):
    for q in questions:
        e = q.example
        spans = sentences_with_spans(e.context)
        assert e.evidence_span == spans[e.evidence_sentence]
        start, end = e.evidence_span
        a = e.answers[0]
        assert start <= a.answer_start and a.answer_start + len(a.text) <= end


SHAPES = {
    "person": r"[A-Z][a-z]+ [A-Z][a-z]+",
    "place": r"[A-Z][a-z]+",
    "date": r"(?:[A-Z][a-z]+ )?1[7-9]\d\d",
    "number": r"\d+",
    "amount": r"\d{1,3}(?:,\d{3})* [a-z]+",
}


def test_distractors_of_the_same_type_are_in_the_passage(questions):
    for q in questions:
        e, answer = q.example, q.example.answers[0].text
        assert len(q.distractors) >= 2 and answer not in q.distractors
        for value in q.distractors:
            assert value in e.context
        if q.answer_type in SHAPES:
            for value in (answer, *q.distractors):
                assert re.fullmatch(SHAPES[q.answer_type], value), (q.answer_type, value)


def test_more_distractors_when_asked():
    for q in make_synthetic_questions(100, seed=2, num_distractors=4, sentences_per_passage=(6, 8)):
        assert len(q.distractors) >= 4


def test_every_question_type_appears_with_its_wh_word(questions):
    counts = Counter(q.qtype for q in questions)
    assert set(counts) == set(QUESTION_TYPES)
    assert min(counts.values()) >= len(questions) / 20  # no type is a rarity
    for q in questions:
        assert question_type(q.example.question) == q.qtype
    assert len({q.example.question.split()[0] for q in questions}) >= 8  # several phrasings, not one per type


def test_the_question_points_at_its_evidence_sentence(questions):
    """Learnable from phrasing: the evidence sentence shares the most content words with the question."""
    hits = 0
    for q in questions:
        e = q.example
        words = set(re.findall(r"\w+", e.question.lower())) - STOPWORDS
        overlap = [len(words & set(re.findall(r"\w+", e.context[s:t].lower())))
                   for s, t in sentences_with_spans(e.context)]
        hits += overlap[e.evidence_sentence] == max(overlap) and overlap.count(max(overlap)) == 1
    assert hits / len(questions) >= 0.98


def test_passage_length_and_sentence_count(questions):
    for q in questions:
        context = q.example.context
        assert 4 <= len(sentences_with_spans(context)) <= 7
        assert 50 <= len(context.split()) <= 150


def test_splits_are_disjoint():
    train, dev = make_synthetic_splits(60, 20, seed=0)
    assert (len(train), len(dev)) == (60, 20)
    assert train[0].id == "syn-train-000000" and dev[0].id == "syn-dev-000000"
    assert not {e.context for e in train} & {e.context for e in dev}
    assert make_synthetic_splits(60, 20, seed=0) == (train, dev)


@pytest.mark.parametrize("options, message", [
    (dict(sentences_per_passage=(0, 3)), "sentences_per_passage"),
    (dict(sentences_per_passage=(5, 4)), "sentences_per_passage"),
    (dict(num_distractors=-1), "num_distractors"),
    (dict(sentences_per_passage=(1, 1)), "num_distractors=2 is more than"),
])
def test_impossible_options_are_user_errors(options, message):
    with pytest.raises(UserError, match=message):
        make_synthetic(5, **options)
