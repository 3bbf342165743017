"""A directory tree of source files → documents, optionally fill-in-the-middle.

Files are visited in sorted order so a prepared dataset is reproducible.
Files that are not UTF-8 (a few in any real tree) are skipped and counted,
not fatal: one odd test fixture should not stop a 2,000-file run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zoo_datasets.errors import DatasetError
from zoo_datasets.fim import fim_transform
from zoo_datasets.packing import delimit, pack

DEFAULT_EXTENSIONS = (".py",)
_SKIP_DIRS = {"__pycache__", ".git", ".hg", ".svn", "node_modules", ".venv", "site-packages"}


def source_files(root: Path, extensions: tuple[str, ...], max_files: int | None = None) -> list[Path]:
    files: list[Path] = []
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in _SKIP_DIRS)
        for name in sorted(names):
            if name.endswith(extensions):
                files.append(Path(directory) / name)
    files.sort()
    return files[:max_files] if max_files else files


def read(
    path: str | Path, extensions: str | tuple[str, ...] = DEFAULT_EXTENSIONS, max_files: int | None = None,
    stats: dict[str, Any] | None = None,
) -> Iterator[str]:
    """The text of every source file under ``path`` (or of ``path`` itself)."""
    root = Path(path)
    if isinstance(extensions, str):
        extensions = tuple(e if e.startswith(".") else f".{e}" for e in extensions.split(",") if e)
    if not root.exists():
        raise DatasetError(root, "does not exist; pass a source file or a directory of source files")
    files = [root] if root.is_file() else source_files(root, extensions, max_files)
    if not files:
        raise DatasetError(root, f"no source files with extensions {', '.join(extensions)}")
    counts = stats if stats is not None else {}
    counts.setdefault("skipped_files", 0)
    counts.setdefault("files", 0)
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            counts["skipped_files"] += 1
            continue
        if not text.strip():
            counts["skipped_files"] += 1
            continue
        counts["files"] += 1
        yield text


def preprocess(
    documents: Iterator[str], tokenizer: Any, seq_length: int, stats: dict[str, Any],
    fim_rate: float = 0.0, spm_rate: float = 0.5, seed: int = 0,
) -> Iterator[dict[str, Any]]:
    """Packed ``seq_length + 1`` samples; a ``fim_rate`` share of documents in PSM/SPM form."""
    import numpy as np

    rng = np.random.default_rng(seed)
    stats.setdefault("fim_psm", 0)
    stats.setdefault("fim_spm", 0)

    def token_docs() -> Iterator[list[int]]:
        for text in documents:
            if fim_rate > 0 and rng.random() < fim_rate:
                spm = bool(rng.random() < spm_rate)
                stats["fim_spm" if spm else "fim_psm"] += 1
                yield fim_transform(tokenizer, text, rng, spm=spm)
            else:
                yield delimit(tokenizer, text)

    yield from pack(token_docs(), seq_length + 1, stats)
