"""What the SQuAD and DuoRC readers share: reading the JSON file, and raising or counting bad records.

File-level problems (missing, unreadable, malformed JSON) always raise `DataError`; record-level
problems go through `Rejections`, which raises them, or with `skip_invalid` counts them by reason.
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any

from lit_rcqa.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"


def read_json(path: str | Path) -> Any:
    """The parsed JSON document at `path`; gzip is detected from the content, not the suffix."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, "file not found", reason="file_not_found") from None
    except IsADirectoryError:
        raise DataError(path, "is a directory, expected a JSON file", reason="unreadable") from None
    except OSError as err:
        raise DataError(path, f"cannot read file: {err.strerror or err}", reason="unreadable") from None
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(path, f"corrupt gzip data: {err}", reason="unreadable") from None
    try:
        text = raw.decode("utf-8-sig")  # official files are UTF-8; tolerate a byte-order mark
    except UnicodeDecodeError as err:
        raise DataError(path, f"not UTF-8 text (bad byte at offset {err.start})", reason="unreadable") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(path, f"malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}",
                        reason="malformed_json") from None


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages ("an array", "a string", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def shorten(text: str, limit: int = 60) -> str:
    """`repr` of `text`, cut to about `limit` characters so an error stays on one readable line."""
    return repr(text) if len(text) <= limit else repr(text[: limit - 3] + "...")


def require_string(obj: dict, key: str, path: str | Path, record: str, *, missing_reason: str,
                   type_reason: str, empty_reason: str | None = None, field: str | None = None) -> str:
    """`obj[key]` if it is a string (non-blank, when `empty_reason` is given), else the matching DataError."""
    field = field or key
    if key not in obj:
        raise DataError(path, "missing", record=record, field=field, reason=missing_reason)
    value = obj[key]
    if not isinstance(value, str):
        raise DataError(path, f"is {json_type(value)}, expected a string", record=record, field=field,
                        reason=type_reason)
    if empty_reason is not None and not value.strip():
        raise DataError(path, "is empty", record=record, field=field, reason=empty_reason)
    return value


class Rejections:
    """Raises each record error, or with `skip_invalid` counts it by `DataError.reason` and goes on."""

    def __init__(self, skip_invalid: bool):
        self.skip_invalid = skip_invalid
        self.counts: dict[str, int] = {}

    def reject(self, err: DataError, records: int = 1) -> None:
        """Handle an invalid record; `records` is how many questions it takes with it."""
        if not self.skip_invalid:
            raise err
        self.count(err.reason, records)

    def count(self, reason: str, records: int = 1) -> None:
        """Count records left out on purpose (not an error), e.g. a DuoRC answer missing from the plot."""
        self.counts[reason] = self.counts.get(reason, 0) + max(records, 1)


def question_header(qa: Any, path: str | Path, where: str, first_seen: dict[str, str]) -> tuple[str, str]:
    """(id, question) of a question record, checked the same way in every format: an object with a
    non-empty string id not seen before and a non-empty question."""
    if not isinstance(qa, dict):
        raise DataError(path, f"question is {json_type(qa)}, expected an object", record=where,
                        reason="bad_question_record")
    qid = require_string(qa, "id", path, where, missing_reason="missing_id", type_reason="bad_id",
                         empty_reason="bad_id")
    if qid in first_seen:
        raise DataError(path, f"duplicate id (first seen at {first_seen[qid]})", record=qid, field="id",
                        reason="duplicate_id")
    question = require_string(qa, "question", path, qid, missing_reason="missing_question",
                              type_reason="bad_question", empty_reason="empty_question")
    return qid, question
