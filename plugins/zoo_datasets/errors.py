"""The one error type dataset readers raise for bad input."""

from __future__ import annotations

from pathlib import Path

from codellama_zoo.errors import UsageError


class DatasetError(UsageError):
    """Input data is malformed: names the file, the record and the field."""

    def __init__(self, path: str | Path, problem: str, *, record: int | None = None, field: str | None = None) -> None:
        self.path = str(path)
        self.record = record
        self.field = field
        where = self.path
        if record is not None:
            where += f": record {record}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {problem}")
