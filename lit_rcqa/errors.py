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
