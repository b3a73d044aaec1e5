"""load_examples: detects SQuAD or DuoRC from the document's shape and reads it the same way."""

from __future__ import annotations

import gzip
import json

import pytest

from lit_rcqa.data.duorc import load_duorc
from lit_rcqa.data.load import load_examples
from lit_rcqa.data.squad import load_squad
from lit_rcqa.errors import DataError, UserError
from tests.data.test_duorc import duorc_doc
from tests.data.test_squad import squad_doc


def write(tmp_path, doc, name) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return str(path)


def test_squad_object_reads_as_squad(tmp_path):
    path = write(tmp_path, squad_doc(), "squad.json")
    data = load_examples(path)
    assert data.version == "1.1" and data.examples == load_squad(path).examples


def test_gzipped_squad_is_detected(tmp_path):
    path = tmp_path / "squad.json.gz"
    path.write_bytes(gzip.compress(json.dumps(squad_doc()).encode()))
    assert [e.id for e in load_examples(path).examples] == ["q1", "q2", "q3", "q4"]


@pytest.mark.parametrize("mode, keep_no_answer", [("eval", False), ("train", False), ("train", True)])
def test_duorc_list_reads_as_duorc_with_its_options(tmp_path, mode, keep_no_answer):
    path = write(tmp_path, duorc_doc(), "duorc.json")
    data = load_examples(path, mode=mode, keep_no_answer=keep_no_answer)
    expected = load_duorc(path, mode=mode, keep_no_answer=keep_no_answer)
    assert data.version == "duorc"
    assert (data.examples, data.skipped) == (expected.examples, expected.skipped)


def test_squad_reads_the_same_in_both_modes(tmp_path):
    path = write(tmp_path, squad_doc(), "squad.json")
    assert load_examples(path, mode="train").examples == load_examples(path, mode="eval").examples


def test_skip_invalid_passes_through(tmp_path):
    doc = squad_doc()
    doc["data"][0]["paragraphs"][0]["qas"][0]["question"] = ""
    data = load_examples(write(tmp_path, doc, "squad.json"), skip_invalid=True)
    assert data.skipped == {"empty_question": 1}


@pytest.mark.parametrize("top", ["just text", 3, None, True])
def test_other_top_levels_are_a_data_error(tmp_path, top):
    path = write(tmp_path, top, "odd.json")
    with pytest.raises(DataError, match="expected a SQuAD object with a 'data' list or a DuoRC list") as info:
        load_examples(path)
    assert info.value.reason == "bad_shape" and str(info.value).startswith(path)


def test_missing_file_and_bad_mode(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_examples(tmp_path / "absent.json")
    with pytest.raises(UserError, match="mode"):
        load_examples(write(tmp_path, squad_doc(), "squad.json"), mode="training")


@pytest.mark.slow
def test_real_v2_subset_through_the_dispatcher(shared_data):
    data = load_examples(shared_data / "dev-v2.0-subset-6articles.json")
    assert (len(data.examples), sum(e.is_impossible for e in data.examples), data.version) == (1905, 910, "2.0")
