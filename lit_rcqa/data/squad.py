"""SQuAD v1.1 / v2.0 reader: one validated `QAExample` per question.

Every answer must index its context exactly (`context[start:start + len(text)] == text`), as in the
official files; anything else is a `DataError` naming the file, the record and the field.
v2.0 `plausible_answers` are not gold answers and are ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lit_rcqa.data.example import Answer, LoadedData, QAExample
from lit_rcqa.data.validation import Rejections, json_type, question_header, read_json, require_string, shorten
from lit_rcqa.errors import DataError


def load_squad(path: str | Path, *, skip_invalid: bool = False) -> LoadedData:
    """Read a SQuAD JSON file (plain or gzip); `skip_invalid` skips and counts bad questions instead of raising."""
    return parse_squad(read_json(path), path, skip_invalid=skip_invalid)


def parse_squad(document: Any, path: str | Path, *, skip_invalid: bool = False, gold_required: bool = True) -> LoadedData:
    """Validate an already parsed SQuAD document; `path` is only used to name the file in errors.
    Without `gold_required` (questions to answer), a question may have no `answers`; those given
    are still checked."""
    if not isinstance(document, dict):
        raise DataError(path, f"top level is {json_type(document)}, expected a SQuAD object with a 'data' list",
                        reason="bad_shape")
    if not isinstance(document.get("data"), list):
        found = "missing" if "data" not in document else f"is {json_type(document['data'])}"
        raise DataError(path, f"{found}, expected a list of articles", field="data", reason="bad_shape")

    rejections = Rejections(skip_invalid)
    first_seen: dict[str, str] = {}  # question id -> where it first appeared, for duplicate messages
    examples: list[QAExample] = []
    has_v2_field = False
    for a, article in enumerate(document["data"]):
        where = f"data[{a}]"
        try:
            title, paragraphs = _article(article, path, where)
        except DataError as err:
            rejections.reject(err, _count_questions(article))
            continue
        for p, paragraph in enumerate(paragraphs):
            where = f"data[{a}].paragraphs[{p}]"
            try:
                context, qas = _paragraph(paragraph, path, where)
            except DataError as err:
                rejections.reject(err, _count_questions(paragraph))
                continue
            for q, qa in enumerate(qas):
                has_v2_field = has_v2_field or (isinstance(qa, dict) and "is_impossible" in qa)
                try:
                    examples.append(_example(qa, title, context, path, f"{where}.qas[{q}]", first_seen,
                                             gold_required))
                except DataError as err:
                    rejections.reject(err)

    declared = str(document.get("version", "")).lstrip("v")
    version = "2.0" if has_v2_field or declared.startswith("2") else "1.1"
    return LoadedData(examples=examples, skipped=rejections.counts, version=version)


def _article(article: Any, path: str | Path, where: str) -> tuple[str, list]:
    if not isinstance(article, dict):
        raise DataError(path, f"article is {json_type(article)}, expected an object", record=where,
                        reason="bad_article")
    title = article.get("title", "")
    if not isinstance(title, str):
        raise DataError(path, f"is {json_type(title)}, expected a string", record=where, field="title",
                        reason="bad_title")
    if "paragraphs" not in article:
        raise DataError(path, "missing", record=where, field="paragraphs", reason="missing_paragraphs")
    if not isinstance(article["paragraphs"], list):
        raise DataError(path, f"is {json_type(article['paragraphs'])}, expected a list", record=where,
                        field="paragraphs", reason="bad_paragraphs")
    return title, article["paragraphs"]


def _paragraph(paragraph: Any, path: str | Path, where: str) -> tuple[str, list]:
    if not isinstance(paragraph, dict):
        raise DataError(path, f"paragraph is {json_type(paragraph)}, expected an object", record=where,
                        reason="bad_paragraph")
    context = require_string(paragraph, "context", path, where, missing_reason="missing_context",
                             type_reason="bad_context", empty_reason="empty_context")
    if "qas" not in paragraph:
        raise DataError(path, "missing", record=where, field="qas", reason="missing_qas")
    if not isinstance(paragraph["qas"], list):
        raise DataError(path, f"is {json_type(paragraph['qas'])}, expected a list", record=where, field="qas",
                        reason="bad_qas")
    return context, paragraph["qas"]


def _example(qa: Any, title: str, context: str, path: str | Path, where: str,
             first_seen: dict[str, str], gold_required: bool = True) -> QAExample:
    """One question, validated field by field; `first_seen` is updated only for a valid question."""
    qid, question = question_header(qa, path, where, first_seen)
    is_impossible = qa.get("is_impossible", False)
    if not isinstance(is_impossible, bool):
        raise DataError(path, f"is {json_type(is_impossible)}, expected true or false", record=qid,
                        field="is_impossible", reason="bad_is_impossible")
    answers = _answers(qa, context, path, qid, is_impossible, gold_required)
    first_seen[qid] = where
    return QAExample(id=qid, title=title, context=context, question=question, answers=answers,
                     is_impossible=is_impossible)


def _answers(qa: dict, context: str, path: str | Path, qid: str, is_impossible: bool,
             gold_required: bool = True) -> tuple[Answer, ...]:
    if "answers" not in qa and (is_impossible or not gold_required):
        return ()  # some v2 writers leave the empty list out; questions to answer may have none
    if "answers" not in qa:
        raise DataError(path, "missing", record=qid, field="answers", reason="missing_answers")
    raw = qa["answers"]
    if not isinstance(raw, list):
        raise DataError(path, f"is {json_type(raw)}, expected a list", record=qid, field="answers",
                        reason="bad_answers")
    if is_impossible and raw:
        raise DataError(path, f"has {len(raw)} answer(s) but is_impossible is true", record=qid,
                        field="answers", reason="impossible_with_answers")
    if not is_impossible and not raw and gold_required:
        raise DataError(path, "is empty for an answerable question (set is_impossible for SQuAD v2.0)",
                        record=qid, field="answers", reason="no_answers")
    return tuple(_answer(answer, context, path, qid, f"answers[{i}]") for i, answer in enumerate(raw))


def _answer(answer: Any, context: str, path: str | Path, qid: str, field: str) -> Answer:
    if not isinstance(answer, dict):
        raise DataError(path, f"is {json_type(answer)}, expected an object with 'text' and 'answer_start'",
                        record=qid, field=field, reason="bad_answer")
    text = require_string(answer, "text", path, qid, field=f"{field}.text", missing_reason="missing_answer_text",
                          type_reason="bad_answer_text", empty_reason="empty_answer_text")
    if "answer_start" not in answer:
        raise DataError(path, "missing", record=qid, field=f"{field}.answer_start",
                        reason="missing_answer_start")
    start = answer["answer_start"]
    if isinstance(start, bool) or not isinstance(start, int):  # bool is an int subclass in Python
        raise DataError(path, f"is {json_type(start)} ({start!r}), expected an integer", record=qid,
                        field=f"{field}.answer_start", reason="bad_answer_start")
    end = start + len(text)
    if start < 0 or end > len(context):
        raise DataError(path, f"{start} is out of range: answer of length {len(text)} in a context of "
                        f"length {len(context)}", record=qid, field=f"{field}.answer_start",
                        reason="answer_start_out_of_range")
    if context[start:end] != text:
        raise DataError(path, f"{start} does not index the answer: context[{start}:{end}] is "
                        f"{shorten(context[start:end])}, text is {shorten(text)}", record=qid,
                        field=f"{field}.answer_start", reason="answer_mismatch")
    return Answer(text=text, answer_start=start)


def _count_questions(node: Any) -> int:
    """How many questions an unusable article or paragraph takes with it (at least one, for counting)."""
    if not isinstance(node, dict):
        return 1
    if isinstance(node.get("qas"), list):
        return max(len(node["qas"]), 1)
    if isinstance(node.get("paragraphs"), list):
        return max(sum(_count_questions(p) if isinstance(p, dict) and isinstance(p.get("qas"), list) else 0
                       for p in node["paragraphs"]), 1)
    return 1
