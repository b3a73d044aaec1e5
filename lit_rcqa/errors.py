"""User-facing errors: one clear line naming what is wrong and where.

Entry points catch `UserError`, print `str(err)` as a single line on stderr and exit with code 2,
so a user never sees a traceback for a mistake in their files, flags or configuration.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix (bad file, bad field, bad flag, missing checkpoint)."""


class DataError(UserError):
    """Invalid QA data. The message names the file, the record id (if any) and the field."""

    def __init__(self, path: str, message: str, *, record: str | None = None, field: str | None = None,
                 reason: str = "invalid"):
        self.path = str(path)
        self.record = record
        self.field = field
        self.reason = reason  # short machine-readable key, used to count skipped records
        where = self.path
        if record is not None:
            where += f": record {record!r}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {message}")


def parser_error_line(message: str) -> str:
    """A jsonargparse error (several lines: the key, then why, the union's subtypes, the value given) as one line:
    `--KEY [VALUE]: why`; a message about no key in particular (unrecognized arguments) with its lines joined."""
    lines = [ln.strip().lstrip("- ") for ln in str(message).splitlines() if ln.strip()]
    if not lines:
        return "invalid arguments"
    if not lines[0].startswith("Parser key"):
        return " ".join(lines)
    key = lines[0].split('"')[1] if lines[0].count('"') >= 2 else lines[0]
    given = next((ln.partition(":")[2].strip() for ln in lines if ln.startswith("Given value:")), None)
    # a union (Optional[...]) lists each subtype's failure: the None subtype's says nothing about the value
    skip = ("Parser key", "Does not validate", "Subtypes", "Errors", "Given value", "Expected a <class 'NoneType'>")
    reasons = [ln for ln in lines if not ln.startswith(skip)]
    reason = reasons[0] if reasons else lines[-1]
    return f"--{key}" + (f" {given}" if given is not None else "") + f": {reason}"
