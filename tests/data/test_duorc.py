"""DuoRC reader: answer location, train/eval conversion, drop counts, and validation errors."""

from __future__ import annotations

import copy
import json

import pytest

from lit_rcqa.data.duorc import load_duorc, locate_answer
from lit_rcqa.data.example import Answer
from lit_rcqa.errors import DataError, UserError

PLOT = "Anne Varga buys a farm in Elmwood. Her brother ann sells the farm to a BANKER for $5 (cash)."
PLOT2 = "A ship sinks near the harbour."


def duorc_doc() -> list:
    """Two movies, six questions covering found, case-insensitive, missing and no-answer gold."""
    return [
        {"id": "m1", "title": "Farm", "plot": PLOT, "qa": [
            {"id": "d1", "question": "Who buys a farm?", "answers": ["Anne Varga"], "no_answer": False},
            {"id": "d2", "question": "Who buys the farm from her brother?",
             "answers": ["a rich man", "banker", "a Banker "], "no_answer": False},
            {"id": "d3", "question": "Where is the farm?", "answers": ["near Boston"], "no_answer": False},
            {"id": "d4", "question": "Why does he sell it?", "answers": [], "no_answer": True},
        ]},
        {"id": "m2", "title": "Ship", "plot": PLOT2, "qa": [
            {"id": "d5", "question": "What sinks?", "answers": ["A ship"], "no_answer": False},
        ]},
    ]


def write(tmp_path, doc, name="duorc.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return str(path)


# --- locating answers ----------------------------------------------------------------------

def test_locate_prefers_exact_case_then_ignores_case():
    assert locate_answer("BANKER", PLOT) == PLOT.index("BANKER")
    assert locate_answer("banker", PLOT) == PLOT.index("BANKER")
    assert locate_answer("ann", PLOT) == PLOT.index("ann sells")  # exact case beats the earlier "Anne"


def test_locate_matches_whole_words_and_escapes_specials():
    assert locate_answer("Ann", "Anne met Annette.") == -1
    assert locate_answer("Ann", "Anne met Ann.") == 9
    assert locate_answer("$5 (cash)", PLOT) == PLOT.index("$5 (cash)")
    assert locate_answer("near Boston", PLOT) == -1


# --- conversion ------------------------------------------------------------------------------

def test_eval_keeps_every_question_and_answer(tmp_path):
    data = load_duorc(write(tmp_path, duorc_doc()), mode="eval")
    assert data.version == "duorc" and data.skipped == {}
    by_id = {e.id: e for e in data.examples}
    assert list(by_id) == ["d1", "d2", "d3", "d4", "d5"]
    start = PLOT.index("BANKER")
    # found answers take the plot's own text, so they index it; the padded "a Banker " is stripped
    assert by_id["d2"].answers == (Answer("a rich man", -1), Answer("BANKER", start), Answer("a BANKER", start - 2))
    assert by_id["d3"].answers == (Answer("near Boston", -1),) and not by_id["d3"].is_impossible
    assert by_id["d4"].answers == () and by_id["d4"].is_impossible
    assert by_id["d5"].context == PLOT2 and by_id["d5"].title == "Ship"


def test_train_keeps_first_found_answer_and_counts_drops(tmp_path):
    data = load_duorc(write(tmp_path, duorc_doc()), mode="train")
    by_id = {e.id: e for e in data.examples}
    assert list(by_id) == ["d1", "d2", "d5"]
    assert by_id["d2"].answers == (Answer("BANKER", PLOT.index("BANKER")),)
    assert by_id["d1"].answers == (Answer("Anne Varga", 0),)
    assert data.skipped == {"answer_not_in_plot": 1, "no_answer": 1}


def test_train_keep_no_answer_makes_unanswerable_examples(tmp_path):
    data = load_duorc(write(tmp_path, duorc_doc()), mode="train", keep_no_answer=True)
    by_id = {e.id: e for e in data.examples}
    assert by_id["d4"].is_impossible and by_id["d4"].answers == ()
    assert data.skipped == {"answer_not_in_plot": 1}


def test_every_located_answer_indexes_the_plot(tmp_path):
    for mode in ("train", "eval"):
        for example in load_duorc(write(tmp_path, duorc_doc()), mode=mode).examples:
            for a in example.answers:
                if a.answer_start >= 0:
                    assert example.context[a.answer_start:a.answer_start + len(a.text)] == a.text


def test_unknown_mode_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="mode must be one of train, eval; got 'test'"):
        load_duorc(write(tmp_path, duorc_doc()), mode="test")


# --- malformed input: one case per kind ------------------------------------------------------

def d3(doc):
    return doc[0]["qa"][2]


CASES = {
    # kind: (mutate, reason, record, field, ids lost under skip_invalid in eval mode)
    "movie_not_object": (lambda d: d.__setitem__(1, "Ship"), "bad_movie", "[1]", None, ("d5",)),
    "missing_plot": (lambda d: d[1].pop("plot"), "missing_plot", "m2", "plot", ("d5",)),
    "plot_not_string": (lambda d: d[1].update(plot=["A ship"]), "bad_plot", "m2", "plot", ("d5",)),
    "empty_plot": (lambda d: d[1].update(plot="   "), "empty_plot", "m2", "plot", ("d5",)),
    "missing_qa": (lambda d: d[1].pop("qa"), "missing_qa", "m2", "qa", ("d5",)),
    "qa_not_list": (lambda d: d[1].update(qa={"id": "d5"}), "bad_qa", "m2", "qa", ("d5",)),
    "title_not_string": (lambda d: d[1].update(title=None), "bad_title", "m2", "title", ("d5",)),
    "question_not_object": (lambda d: d[0]["qa"].__setitem__(2, "d3"), "bad_question_record", "[0].qa[2]", None,
                            ("d3",)),
    "missing_id": (lambda d: d3(d).pop("id"), "missing_id", "[0].qa[2]", "id", ("d3",)),
    "non_string_id": (lambda d: d3(d).update(id=3), "bad_id", "[0].qa[2]", "id", ("d3",)),
    "duplicate_id": (lambda d: d3(d).update(id="d1"), "duplicate_id", "d1", "id", ("d3",)),
    "missing_question": (lambda d: d3(d).pop("question"), "missing_question", "d3", "question", ("d3",)),
    "empty_question": (lambda d: d3(d).update(question=""), "empty_question", "d3", "question", ("d3",)),
    "missing_answers": (lambda d: d3(d).pop("answers"), "missing_answers", "d3", "answers", ("d3",)),
    "answers_not_list": (lambda d: d3(d).update(answers="near Boston"), "bad_answers", "d3", "answers", ("d3",)),
    "answer_not_string": (lambda d: d3(d).update(answers=[{"text": "x"}]), "bad_answer", "d3", "answers[0]",
                          ("d3",)),
    "empty_answer": (lambda d: d3(d).update(answers=["Elmwood", " "]), "empty_answer_text", "d3", "answers[1]",
                     ("d3",)),
    "answerable_without_answers": (lambda d: d3(d).update(answers=[]), "no_answers", "d3", "answers", ("d3",)),
    "missing_no_answer": (lambda d: d3(d).pop("no_answer"), "missing_no_answer", "d3", "no_answer", ("d3",)),
    "no_answer_not_bool": (lambda d: d3(d).update(no_answer=0), "bad_no_answer", "d3", "no_answer", ("d3",)),
    "no_answer_with_answers": (lambda d: d3(d).update(no_answer=True), "no_answer_with_answers", "d3", "answers",
                               ("d3",)),
}


def broken(tmp_path, mutate) -> str:
    doc = copy.deepcopy(duorc_doc())
    mutate(doc)
    return write(tmp_path, doc)


@pytest.mark.parametrize("kind", list(CASES))
def test_malformed_record_raises_one_clear_line(tmp_path, kind):
    mutate, reason, record, field, _ = CASES[kind]
    path = broken(tmp_path, mutate)
    with pytest.raises(DataError) as info:
        load_duorc(path)
    message = str(info.value)
    assert info.value.reason == reason
    assert message.startswith(path) and "\n" not in message
    assert f"record {record!r}" in message
    if field is not None:
        assert f"field {field!r}" in message


@pytest.mark.parametrize("kind", list(CASES))
def test_skip_invalid_counts_by_reason(tmp_path, kind):
    mutate, reason, _, _, lost = CASES[kind]
    data = load_duorc(broken(tmp_path, mutate), skip_invalid=True)
    assert data.skipped == {reason: 1}
    assert [e.id for e in data.examples] == [q for q in ("d1", "d2", "d3", "d4", "d5") if q not in lost]


def test_train_mode_counts_invalid_and_dropped_together(tmp_path):
    doc = duorc_doc()
    doc[1]["qa"][0]["question"] = " "
    data = load_duorc(write(tmp_path, doc), mode="train", skip_invalid=True)
    assert data.skipped == {"empty_question": 1, "answer_not_in_plot": 1, "no_answer": 1}
    assert [e.id for e in data.examples] == ["d1", "d2"]


@pytest.mark.parametrize("content, reason, fragment", [
    ({"data": []}, "bad_shape", "top level is an object, expected a DuoRC list"),
    (None, "malformed_json", "malformed JSON at line 1"),
])
def test_file_level_errors_always_raise(tmp_path, content, reason, fragment):
    path = tmp_path / "duorc.json"
    path.write_text(json.dumps(content) if content is not None else "[{,]")
    with pytest.raises(DataError) as info:
        load_duorc(path, skip_invalid=True)
    assert info.value.reason == reason and fragment in str(info.value) and str(path) in str(info.value)
