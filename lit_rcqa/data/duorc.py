"""DuoRC (SelfRC / ParaphraseRC) reader, converted to SQuAD form as Ramnath et al. did.

DuoRC answers are free text, not spans, so each one is located in the plot by string search
(`locate_answer`). Training keeps the first answer that is found and drops the rest of the question
when none is; evaluation keeps every question and every answer, with `answer_start = -1` where an
answer is not in the plot (scoring compares text, so it still counts as gold).

File layout: a JSON list of {"id", "title", "plot", "qa": [{"id", "question", "answers": [str, ...],
"no_answer": bool}]}.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lit_rcqa.data.example import Answer, LoadedData, QAExample
from lit_rcqa.data.validation import Rejections, json_type, question_header, read_json, require_string
from lit_rcqa.errors import DataError, UserError

MODES = ("train", "eval")


def load_duorc(path: str | Path, *, mode: str = "eval", keep_no_answer: bool = False,
               skip_invalid: bool = False) -> LoadedData:
    """Read a DuoRC JSON file; see `parse_duorc` for what `mode` and `keep_no_answer` keep."""
    check_mode(mode)  # before reading: a bad flag is reported even when the file is also bad
    return parse_duorc(read_json(path), path, mode=mode, keep_no_answer=keep_no_answer,
                       skip_invalid=skip_invalid)


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise UserError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")


def locate_answer(answer: str, plot: str) -> int:
    """Char index of `answer` in `plot`, or -1.

    The rule: the first whole-word occurrence with exact case; failing that, the first whole-word
    occurrence ignoring case. Whole-word means no letter or digit directly before or after the match,
    so "Ann" is not found inside "Anne". Leading and trailing whitespace of `answer` must already be stripped.
    """
    pattern = r"(?<!\w)" + re.escape(answer) + r"(?!\w)"
    match = re.search(pattern, plot) or re.search(pattern, plot, flags=re.IGNORECASE)
    return match.start() if match else -1


def parse_duorc(document: Any, path: str | Path, *, mode: str = "eval", keep_no_answer: bool = False,
                skip_invalid: bool = False, gold_required: bool = True) -> LoadedData:
    """Validate and convert a parsed DuoRC document.

    mode="train": one Answer (the first found) per question; questions with no answer in the plot are
    dropped ("answer_not_in_plot"), and no-answer questions too ("no_answer") unless `keep_no_answer`,
    which keeps them as unanswerable (SQuAD v2 style).
    mode="eval": every question with all its answers; no-answer questions have no answers and
    is_impossible=True.
    Without `gold_required` (questions to answer), `answers` and `no_answer` may be left out.
    """
    check_mode(mode)
    if not isinstance(document, list):
        raise DataError(path, f"top level is {json_type(document)}, expected a DuoRC list of movies",
                        reason="bad_shape")
    rejections = Rejections(skip_invalid)
    first_seen: dict[str, str] = {}
    examples: list[QAExample] = []
    for m, movie in enumerate(document):
        where = f"[{m}]"
        try:
            title, plot, qas = _movie(movie, path, where)
        except DataError as err:
            qa = movie.get("qa") if isinstance(movie, dict) else None
            rejections.reject(err, len(qa) if isinstance(qa, list) else 1)
            continue
        for q, qa in enumerate(qas):
            try:
                qid, question, answers, no_answer = _question(qa, path, f"{where}.qa[{q}]", first_seen,
                                                              gold_required=gold_required)
            except DataError as err:
                rejections.reject(err)
                continue
            example = _convert(qid, title, plot, question, answers, no_answer, mode, keep_no_answer, rejections)
            if example is not None:
                examples.append(example)
    return LoadedData(examples=examples, skipped=rejections.counts, version="duorc")


def _convert(qid: str, title: str, plot: str, question: str, answers: list[str], no_answer: bool, mode: str,
             keep_no_answer: bool, rejections: Rejections) -> QAExample | None:
    """The SQuAD-form example for one valid question, or None (counted) when training drops it."""
    def example(gold: tuple[Answer, ...], impossible: bool) -> QAExample:
        return QAExample(id=qid, title=title, context=plot, question=question, answers=gold,
                         is_impossible=impossible)

    if no_answer:
        if mode == "train" and not keep_no_answer:
            rejections.count("no_answer")
            return None
        return example((), True)
    located = [_located(answer, plot) for answer in answers]
    if mode == "eval":
        return example(tuple(located), False)
    found = [answer for answer in located if answer.answer_start >= 0]
    if not found:
        rejections.count("answer_not_in_plot")
        return None
    return example((found[0],), False)


def _located(answer: str, plot: str) -> Answer:
    """The answer with its start; found answers take the plot's own text, so they index it exactly."""
    text = answer.strip()
    start = locate_answer(text, plot)
    if start < 0:
        return Answer(text=text, answer_start=-1)
    return Answer(text=plot[start:start + len(text)], answer_start=start)


def _movie(movie: Any, path: str | Path, where: str) -> tuple[str, str, list]:
    if not isinstance(movie, dict):
        raise DataError(path, f"movie is {json_type(movie)}, expected an object", record=where,
                        reason="bad_movie")
    if isinstance(movie.get("id"), str) and movie["id"].strip():
        where = movie["id"]
    title = movie.get("title", "")
    if not isinstance(title, str):
        raise DataError(path, f"is {json_type(title)}, expected a string", record=where, field="title",
                        reason="bad_title")
    plot = require_string(movie, "plot", path, where, missing_reason="missing_plot", type_reason="bad_plot",
                          empty_reason="empty_plot")
    if "qa" not in movie:
        raise DataError(path, "missing", record=where, field="qa", reason="missing_qa")
    if not isinstance(movie["qa"], list):
        raise DataError(path, f"is {json_type(movie['qa'])}, expected a list", record=where, field="qa",
                        reason="bad_qa")
    return title, plot, movie["qa"]


def _question(qa: Any, path: str | Path, where: str, first_seen: dict[str, str],
              gold_required: bool = True) -> tuple[str, str, list[str], bool]:
    """(id, question, answers, no_answer) of one valid question record; `first_seen` is updated.
    Without `gold_required`, a question may leave out `answers` and `no_answer` (nothing to score)."""
    qid, question = question_header(qa, path, where, first_seen)
    if not gold_required:
        qa = {"no_answer": False, "answers": [], **qa}
    if "no_answer" not in qa:
        raise DataError(path, "missing", record=qid, field="no_answer", reason="missing_no_answer")
    no_answer = qa["no_answer"]
    if not isinstance(no_answer, bool):
        raise DataError(path, f"is {json_type(no_answer)}, expected true or false", record=qid,
                        field="no_answer", reason="bad_no_answer")
    if "answers" not in qa:
        raise DataError(path, "missing", record=qid, field="answers", reason="missing_answers")
    answers = qa["answers"]
    if not isinstance(answers, list):
        raise DataError(path, f"is {json_type(answers)}, expected a list of strings", record=qid,
                        field="answers", reason="bad_answers")
    for i, answer in enumerate(answers):
        if not isinstance(answer, str):
            raise DataError(path, f"is {json_type(answer)}, expected a string", record=qid,
                            field=f"answers[{i}]", reason="bad_answer")
        if not answer.strip():
            raise DataError(path, "is empty", record=qid, field=f"answers[{i}]", reason="empty_answer_text")
    if no_answer and answers:
        raise DataError(path, f"has {len(answers)} answer(s) but no_answer is true", record=qid,
                        field="answers", reason="no_answer_with_answers")
    if not no_answer and not answers and gold_required:
        raise DataError(path, "is empty but no_answer is false", record=qid, field="answers",
                        reason="no_answers")
    first_seen[qid] = where
    return qid, question, answers, no_answer
