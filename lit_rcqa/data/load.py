"""One entry point for QA files: detects SQuAD (an object with "data") or DuoRC (a list) and reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lit_rcqa.data.duorc import check_mode, parse_duorc
from lit_rcqa.data.example import LoadedData
from lit_rcqa.data.squad import parse_squad
from lit_rcqa.data.validation import json_type, read_json
from lit_rcqa.errors import DataError

PREDICT = "predict"  # load_examples mode for questions to answer: gold answers optional


def detect_format(document: Any, path: str | Path) -> str:
    """"squad" or "duorc" from the shape of a parsed document; anything else is a DataError."""
    if isinstance(document, dict):
        return "squad"
    if isinstance(document, list):
        return "duorc"
    raise DataError(path, f"top level is {json_type(document)}, expected a SQuAD object with a 'data' list "
                    "or a DuoRC list of movies", reason="bad_shape")


def load_examples(path: str | Path, *, mode: str = "eval", keep_no_answer: bool = False,
                  skip_invalid: bool = False) -> LoadedData:
    """Read a SQuAD or DuoRC file. `mode` and `keep_no_answer` only change DuoRC's conversion: SQuAD
    answers are spans already, so a SQuAD file reads the same in "train" and "eval". mode="predict"
    reads questions to answer: gold answers are optional in both formats."""
    gold_required = mode != PREDICT
    mode = mode if gold_required else "eval"  # questions to answer read as evaluation data, answers optional
    check_mode(mode)
    document = read_json(path)
    if detect_format(document, path) == "duorc":
        return parse_duorc(document, path, mode=mode, keep_no_answer=keep_no_answer, skip_invalid=skip_invalid,
                           gold_required=gold_required)
    return parse_squad(document, path, skip_invalid=skip_invalid, gold_required=gold_required)
