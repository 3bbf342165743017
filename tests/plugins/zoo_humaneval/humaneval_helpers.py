"""Shared helpers for the zoo_humaneval tests: sample files and hostile completions."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path


def write_samples(path: Path, samples: Iterable[tuple[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for task_id, completion in samples:
            handle.write(json.dumps({"task_id": task_id, "completion": completion}) + "\n")
    return path


def processes_of_uid(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def body(code: str) -> str:
    """Indent ``code`` as a function body, the way a completion continues a HumanEval prompt."""
    return "".join(f"    {line}\n" for line in code.strip("\n").split("\n"))
