"""SQuAD reader: exact examples, real quirks, and one clear DataError per kind of malformed input."""

from __future__ import annotations

import copy
import gzip
import json
from dataclasses import dataclass
from typing import Callable

import pytest

from lit_rcqa.data.example import Answer, QAExample
from lit_rcqa.data.squad import load_squad
from lit_rcqa.errors import DataError
from lit_rcqa.paths import REPO_ROOT
from tests.conftest import (REQUIRE_DATA_ENV, SHARED_FILES, SQUAD_V1_EXTRACT, SQUAD_V2_EXTRACT,
                            locate_shared_data)

CONTEXT = "Alma Rue founded Tinyland in 1901. It has 12 lakes."
OTHER = "Tinyland exports 40 tonnes of salt."
THIRD = "Boro is a river."


def squad_doc() -> dict:
    """Two articles, three paragraphs, four questions; each test mutates one piece of it."""
    return {"version": "1.1", "data": [
        {"title": "Tinyland", "paragraphs": [
            {"context": CONTEXT, "qas": [
                {"id": "q1", "question": "Who founded Tinyland?", "answers": [{"text": "Alma Rue", "answer_start": 0}]},
                {"id": "q2", "question": "How many lakes?", "answers": [{"text": "12", "answer_start": 42}]},
            ]},
            {"context": OTHER, "qas": [
                {"id": "q3", "question": "What does it export?", "answers": [{"text": "salt", "answer_start": 30}]},
            ]},
        ]},
        {"title": "Boro", "paragraphs": [
            {"context": THIRD, "qas": [
                {"id": "q4", "question": "What is Boro?", "answers": [{"text": "a river", "answer_start": 8}]},
            ]},
        ]},
    ]}


def write(tmp_path, doc, name="data.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return str(path)


def test_reads_every_question_exactly(tmp_path):
    data = load_squad(write(tmp_path, squad_doc()))
    assert data.version == "1.1" and data.skipped == {}
    assert [e.id for e in data.examples] == ["q1", "q2", "q3", "q4"]
    assert data.examples[1] == QAExample(id="q2", title="Tinyland", context=CONTEXT, question="How many lakes?",
                                         answers=(Answer("12", 42),), is_impossible=False)
    assert data.examples[3].title == "Boro"


def test_gzip_and_plain_read_the_same(tmp_path):
    plain = write(tmp_path, squad_doc())
    zipped = tmp_path / "data.json.gz"
    zipped.write_bytes(gzip.compress(json.dumps(squad_doc()).encode()))
    assert load_squad(zipped).examples == load_squad(plain).examples


def test_v2_unanswerable_questions_and_plausible_answers(tmp_path):
    doc = squad_doc()
    qas = doc["data"][0]["paragraphs"][0]["qas"]
    qas[0]["is_impossible"] = False
    qas[1].update(is_impossible=True, answers=[], plausible_answers=[{"text": "12", "answer_start": 42}])
    del doc["data"][1]["paragraphs"][0]["qas"][0]["answers"]  # an impossible question may omit the list
    doc["data"][1]["paragraphs"][0]["qas"][0]["is_impossible"] = True
    data = load_squad(write(tmp_path, doc))
    assert data.version == "2.0"
    by_id = {e.id: e for e in data.examples}
    assert by_id["q2"].is_impossible and by_id["q2"].answers == ()
    assert by_id["q4"].is_impossible and by_id["q4"].answers == ()
    assert not by_id["q1"].is_impossible and by_id["q1"].answers == (Answer("Alma Rue", 0),)


def test_version_from_the_file_header(tmp_path):
    doc = squad_doc()
    doc["version"] = "v2.0"
    assert load_squad(write(tmp_path, doc)).version == "2.0"


def test_unicode_odd_whitespace_and_padded_answers_pass(tmp_path):
    # Offsets count code points, as Python (and the official files) do: the emoji is one character.
    context = "Zoë\u00a0Ĺeon 🎉 sailed  to\tKraków\n in  1840 ."
    answers = [{"text": "Kraków", "answer_start": context.index("Kraków")},
               {"text": " in  1840 ", "answer_start": context.index(" in  1840 ")},
               {"text": "Zoë\u00a0Ĺeon", "answer_start": 0}]
    doc = {"version": "1.1", "data": [{"title": "Ünïcode", "paragraphs": [
        {"context": context, "qas": [{"id": "u1", "question": "Wohin? ", "answers": answers}]}]}]}
    example = load_squad(write(tmp_path, doc)).examples[0]
    assert [a.text for a in example.answers] == ["Kraków", " in  1840 ", "Zoë\u00a0Ĺeon"]
    for answer in example.answers:
        assert example.context[answer.answer_start:answer.answer_start + len(answer.text)] == answer.text


# --- malformed input: one case per kind ------------------------------------------------------

def q2(doc):
    return doc["data"][0]["paragraphs"][0]["qas"][1]


def p1(doc):
    return doc["data"][0]["paragraphs"][1]


def set_path(getter: Callable, **fields):
    def mutate(doc):
        getter(doc).update(fields)
    return mutate


def drop(getter: Callable, key: str):
    def mutate(doc):
        del getter(doc)[key]
    return mutate


def answer0(**fields):
    def mutate(doc):
        q2(doc)["answers"][0].update(fields)
    return mutate


def replace(container: Callable, index: int, value):
    def mutate(doc):
        container(doc)[index] = value
    return mutate


def qas0(doc):
    return doc["data"][0]["paragraphs"][0]["qas"]


QPATH = "data[0].paragraphs[0].qas[1]"


@dataclass
class Case:
    mutate: Callable
    reason: str
    record: str
    field: str | None
    lost: tuple[str, ...]  # ids that skip_invalid leaves out


CASES = {
    "question_not_object": Case(replace(qas0, 1, "q2"), "bad_question_record", QPATH, None, ("q2",)),
    "missing_id": Case(drop(q2, "id"), "missing_id", QPATH, "id", ("q2",)),
    "non_string_id": Case(set_path(q2, id=123), "bad_id", QPATH, "id", ("q2",)),
    "empty_id": Case(set_path(q2, id=" "), "bad_id", QPATH, "id", ("q2",)),
    "duplicate_id": Case(set_path(q2, id="q1"), "duplicate_id", "q1", "id", ("q2",)),  # the second "q1" goes
    "missing_question": Case(drop(q2, "question"), "missing_question", "q2", "question", ("q2",)),
    "non_string_question": Case(set_path(q2, question=["How many?"]), "bad_question", "q2", "question", ("q2",)),
    "empty_question": Case(set_path(q2, question="  \n"), "empty_question", "q2", "question", ("q2",)),
    "missing_answers": Case(drop(q2, "answers"), "missing_answers", "q2", "answers", ("q2",)),
    "answers_not_list": Case(set_path(q2, answers={"text": "12", "answer_start": 42}), "bad_answers", "q2",
                             "answers", ("q2",)),
    "answerable_without_answers": Case(set_path(q2, answers=[]), "no_answers", "q2", "answers", ("q2",)),
    "answer_not_object": Case(set_path(q2, answers=["12"]), "bad_answer", "q2", "answers[0]", ("q2",)),
    "answer_missing_text": Case(lambda d: q2(d)["answers"][0].pop("text"), "missing_answer_text", "q2",
                                "answers[0].text", ("q2",)),
    "answer_empty_text": Case(answer0(text=""), "empty_answer_text", "q2", "answers[0].text", ("q2",)),
    "answer_missing_start": Case(lambda d: q2(d)["answers"][0].pop("answer_start"), "missing_answer_start", "q2",
                                 "answers[0].answer_start", ("q2",)),
    "answer_start_string": Case(answer0(answer_start="42"), "bad_answer_start", "q2", "answers[0].answer_start",
                                ("q2",)),
    "answer_start_bool": Case(answer0(answer_start=True), "bad_answer_start", "q2", "answers[0].answer_start",
                              ("q2",)),
    "answer_start_float": Case(answer0(answer_start=42.0), "bad_answer_start", "q2", "answers[0].answer_start",
                               ("q2",)),
    "answer_start_negative": Case(answer0(answer_start=-1), "answer_start_out_of_range", "q2",
                                  "answers[0].answer_start", ("q2",)),
    "answer_start_past_end": Case(answer0(answer_start=len(CONTEXT) - 1), "answer_start_out_of_range", "q2",
                                  "answers[0].answer_start", ("q2",)),
    "answer_start_misindexes": Case(answer0(answer_start=41), "answer_mismatch", "q2", "answers[0].answer_start",
                                    ("q2",)),
    "is_impossible_not_bool": Case(set_path(q2, is_impossible="false"), "bad_is_impossible", "q2",
                                   "is_impossible", ("q2",)),
    "impossible_with_answers": Case(set_path(q2, is_impossible=True), "impossible_with_answers", "q2", "answers",
                                    ("q2",)),
    "paragraph_not_object": Case(lambda d: d["data"][0]["paragraphs"].__setitem__(1, [OTHER]), "bad_paragraph",
                                 "data[0].paragraphs[1]", None, ("q3",)),
    "missing_context": Case(drop(p1, "context"), "missing_context", "data[0].paragraphs[1]", "context", ("q3",)),
    "non_string_context": Case(set_path(p1, context=None), "bad_context", "data[0].paragraphs[1]", "context",
                               ("q3",)),
    "empty_context": Case(set_path(p1, context=" \t"), "empty_context", "data[0].paragraphs[1]", "context",
                          ("q3",)),
    "missing_qas": Case(drop(p1, "qas"), "missing_qas", "data[0].paragraphs[1]", "qas", ("q3",)),
    "qas_not_list": Case(set_path(p1, qas={"id": "q3"}), "bad_qas", "data[0].paragraphs[1]", "qas", ("q3",)),
    "article_not_object": Case(lambda d: d["data"].__setitem__(1, "Boro"), "bad_article", "data[1]", None,
                               ("q4",)),
    "article_missing_paragraphs": Case(lambda d: d["data"][1].pop("paragraphs"), "missing_paragraphs", "data[1]",
                                       "paragraphs", ("q4",)),
    "paragraphs_not_list": Case(lambda d: d["data"][1].update(paragraphs="none"), "bad_paragraphs", "data[1]",
                                "paragraphs", ("q4",)),
    "title_not_string": Case(lambda d: d["data"][1].update(title=7), "bad_title", "data[1]", "title", ("q4",)),
}


def broken(tmp_path, case: Case) -> str:
    doc = copy.deepcopy(squad_doc())
    case.mutate(doc)
    return write(tmp_path, doc)


@pytest.mark.parametrize("kind", list(CASES))
def test_malformed_record_raises_one_clear_line(tmp_path, kind):
    case = CASES[kind]
    path = broken(tmp_path, case)
    with pytest.raises(DataError) as info:
        load_squad(path)
    err = info.value
    message = str(err)
    assert err.reason == case.reason
    assert message.startswith(path) and "\n" not in message
    assert f"record {case.record!r}" in message
    if case.field is not None:
        assert f"field {case.field!r}" in message
        assert err.field == case.field


@pytest.mark.parametrize("kind", list(CASES))
def test_skip_invalid_counts_by_reason_and_keeps_the_rest(tmp_path, kind):
    case = CASES[kind]
    data = load_squad(broken(tmp_path, case), skip_invalid=True)
    assert data.skipped == {case.reason: 1}
    expected = [q for q in ("q1", "q2", "q3", "q4") if q not in case.lost]
    assert [e.id for e in data.examples] == expected


def test_skip_invalid_counts_several_reasons(tmp_path):
    doc = squad_doc()
    q2(doc)["answers"][0]["answer_start"] = 3
    doc["data"][1]["paragraphs"][0]["qas"][0]["question"] = ""
    doc["data"][0]["paragraphs"][1]["qas"].append({"id": "q1", "question": "Again?", "answers": []})
    data = load_squad(write(tmp_path, doc), skip_invalid=True)
    assert data.skipped == {"answer_mismatch": 1, "empty_question": 1, "duplicate_id": 1}
    assert data.num_skipped == 3
    assert [e.id for e in data.examples] == ["q1", "q3"]


def test_mismatch_message_shows_both_texts(tmp_path):
    path = broken(tmp_path, CASES["answer_start_misindexes"])
    with pytest.raises(DataError, match=r"context\[41:43\] is ' 1', text is '12'"):
        load_squad(path)


# --- file-level errors: raised even with skip_invalid ---------------------------------------

def raw_file(tmp_path, content: bytes, name="data.json") -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


FILE_CASES = {
    "missing_file": (lambda tmp: str(tmp / "nope.json"), "file_not_found", "file not found"),
    "directory": (lambda tmp: str(tmp), "unreadable", "is a directory"),
    "malformed_json": (lambda tmp: raw_file(tmp, b'{"data": [\n  {"title": "x",\n   "paragraphs": [}\n]}'),
                       "malformed_json", "line 3, column 19"),
    "truncated_json": (lambda tmp: raw_file(tmp, b'{"data": ['), "malformed_json", "line 1, column 11"),
    "corrupt_gzip": (lambda tmp: raw_file(tmp, b"\x1f\x8b\x08\x00garbage", "d.json.gz"), "unreadable", "gzip"),
    "not_utf8": (lambda tmp: raw_file(tmp, b'{"data": [], "v": "\xff\xfe"}'), "unreadable", "UTF-8"),
    "top_level_list": (lambda tmp: write(tmp, [squad_doc()]), "bad_shape", "top level is an array"),
    "no_data_key": (lambda tmp: write(tmp, {"version": "1.1"}), "bad_shape", "field 'data': missing"),
    "data_not_list": (lambda tmp: write(tmp, {"data": {"title": "x"}}), "bad_shape", "field 'data': is an object"),
}


@pytest.mark.parametrize("kind", list(FILE_CASES))
@pytest.mark.parametrize("skip_invalid", [False, True])
def test_file_level_errors_always_raise(tmp_path, kind, skip_invalid):
    make, reason, fragment = FILE_CASES[kind]
    path = make(tmp_path)
    with pytest.raises(DataError) as info:
        load_squad(path, skip_invalid=skip_invalid)
    assert info.value.reason == reason
    assert str(info.value).startswith(path) and fragment in str(info.value)
    assert "\n" not in str(info.value)


# --- the real files -----------------------------------------------------------------------------

def assert_loads_cleanly(data, total: int, impossible: int, version: str) -> None:
    assert (len(data.examples), data.num_skipped, data.version) == (total, 0, version)
    assert sum(e.is_impossible for e in data.examples) == impossible
    assert len({e.id for e in data.examples}) == total
    for example in data.examples:
        assert example.answers or example.is_impossible
        for a in example.answers:
            assert example.context[a.answer_start:a.answer_start + len(a.text)] == a.text


@pytest.mark.slow
@pytest.mark.parametrize("name, total, impossible, version", [
    ("dev-v1.1.json.gz", 10570, 0, "1.1"),
    ("train-v1.1-subset-44articles.json", 11877, 0, "1.1"),
    ("dev-v2.0-subset-6articles.json", 1905, 910, "2.0"),
])
def test_real_squad_files_load_without_errors(shared_data, name, total, impossible, version):
    assert_loads_cleanly(load_squad(shared_data / name), total, impossible, version)


@pytest.mark.parametrize("path, total, impossible, version", [
    (SQUAD_V1_EXTRACT, 293, 0, "1.1"),
    (SQUAD_V2_EXTRACT, 208, 112, "2.0"),
], ids=["v1.1", "v2.0"])
def test_committed_extracts_load_without_errors(path, total, impossible, version):
    assert_loads_cleanly(load_squad(path), total, impossible, version)


def test_v1_extract_holds_golds_that_normalise_to_nothing(squad_v1_extract):
    """The reason these articles were chosen (tests/fixtures/README.md): the official scripts treat
    a gold such as "." specially, and the scoring tests need real ones."""
    doc = json.loads(squad_v1_extract.read_text(encoding="utf-8"))
    dotted = {qa["id"] for a in doc["data"] for p in a["paragraphs"] for qa in p["qas"]
              if any(x["text"] == "." for x in qa["answers"])}
    assert dotted == {"5725bad5271a42140099d0c1", "5730b7ce069b5314008322c4"}


@pytest.mark.parametrize("extract, source, titles", [
    (SQUAD_V1_EXTRACT, "dev-v1.1.json.gz", ["1973_oil_crisis", "Imperialism"]),
    (SQUAD_V2_EXTRACT, "dev-v2.0-subset-6articles.json", ["Normans"]),
], ids=["v1.1", "v2.0"])
def test_extracts_are_exact_copies_of_the_released_articles(shared_data, extract, source, titles):
    """Each extract is the source document with only whole articles kept, byte for byte."""
    path = shared_data / source
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        raw = fh.read()
    doc = json.loads(raw)
    articles = [a for a in doc["data"] if a["title"] in titles]
    assert [a["title"] for a in articles] == titles
    assert all(json.dumps(a) in raw for a in articles)  # the source's own serialisation of each record
    assert extract.read_text(encoding="utf-8") == json.dumps({**doc, "data": articles})


# --- missing real data: a skip, or a failure where the data is required (CI) ---------------------

def test_missing_real_data_skips_unless_required(tmp_path, monkeypatch):
    monkeypatch.delenv(REQUIRE_DATA_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="dev-v1.1.json.gz"):
        locate_shared_data(tmp_path)
    monkeypatch.setenv(REQUIRE_DATA_ENV, "0")
    with pytest.raises(pytest.skip.Exception):
        locate_shared_data(tmp_path)
    monkeypatch.setenv(REQUIRE_DATA_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=f"{REQUIRE_DATA_ENV} is set"):
        locate_shared_data(tmp_path)
    for name in SHARED_FILES[:-1]:  # one file short is still missing data
        (tmp_path / name).write_text("{}")
    with pytest.raises(pytest.fail.Exception, match=SHARED_FILES[-1]):
        locate_shared_data(tmp_path)
    (tmp_path / SHARED_FILES[-1]).write_text("{}")
    assert locate_shared_data(tmp_path) == tmp_path


def test_ci_requires_the_real_data():
    """.ci/run exports the variable before it runs the README's test command."""
    lines = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    exported = [i for i, line in enumerate(lines)
                if line.startswith("export ") and f"{REQUIRE_DATA_ENV}=1" in line.split()]
    runs_tests = [i for i, line in enumerate(lines) if line.startswith("eval ")]
    assert exported and runs_tests and exported[0] < runs_tests[0]
