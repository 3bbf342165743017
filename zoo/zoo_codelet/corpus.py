"""The training corpus: this machine's Python standard library, split and cut into documents.

Test directories and generated tables are left out; files are split into
train and held-out by the same path hash the ``docstrings`` dataset uses,
so no held-out file is seen by the tokenizer, pretraining or finetuning.
Train files are cut into documents of about ``doc_chars`` characters at
blank lines, so a fill-in-the-middle example fits in one training sequence.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from codellama_zoo.errors import UsageError

# Tests, generated codec tables, the pydoc topic dump, bundled wheels and installed packages.
SKIP_DIRS = "test,tests,idle_test,__pycache__,site-packages,dist-packages,encodings,pydoc_data,ensurepip"
HELDOUT_PERCENT = 5.0
DOC_CHARS = 1200


def stdlib_root() -> Path:
    """The standard library of the running interpreter."""
    return Path(sysconfig.get_paths()["stdlib"])


def paragraphs(text: str) -> Iterator[str]:
    """Runs of lines ending in a blank line (the blank lines stay with the run before them)."""
    run: list[str] = []
    for line in text.splitlines(keepends=True):
        if not line.strip() and run and run[-1].strip():
            run.append(line)
            yield "".join(run)
            run = []
        else:
            run.append(line)
    if run:
        yield "".join(run)


def split_documents(text: str, doc_chars: int = DOC_CHARS) -> list[str]:
    """``text`` cut at blank lines into documents of at most ~``doc_chars`` characters.

    A paragraph longer than ``doc_chars`` is cut at line boundaries. Joining
    the documents gives ``text`` back.
    """
    if doc_chars <= 0:
        raise UsageError(f"doc_chars must be positive, got {doc_chars}")
    docs: list[str] = []
    current = ""
    for para in paragraphs(text):
        if current and len(current) + len(para) > doc_chars:
            docs.append(current)
            current = ""
        if len(para) <= doc_chars:
            current += para
            continue
        for line in para.splitlines(keepends=True):
            if current and len(current) + len(line) > doc_chars:
                docs.append(current)
                current = ""
            current += line
    if current:
        docs.append(current)
    return docs


def build_corpus(
    out: str | Path, source: str | Path | None = None, *, heldout_percent: float = HELDOUT_PERCENT,
    doc_chars: int = DOC_CHARS, skip_dirs: str = SKIP_DIRS,
) -> dict[str, Any]:
    """Write ``out/train/<file>.<n>.py`` documents and ``out/heldout/<file>`` whole files; return the manifest."""
    from zoo_datasets.docstrings import heldout_file, python_files

    root = Path(source) if source is not None else stdlib_root()
    if not root.is_dir():
        raise UsageError(f"corpus source {str(root)!r} is not a directory of Python source")
    out = Path(out)
    skip = {d for d in skip_dirs.split(",") if d}
    digest = hashlib.sha256()
    manifest: dict[str, Any] = {
        "source": str(root), "python": platform.python_version(), "heldout_percent": heldout_percent,
        "doc_chars": doc_chars, "skip_dirs": skip_dirs, "train_files": 0, "train_documents": 0,
        "train_characters": 0, "heldout_files": [], "heldout_characters": 0, "skipped_files": 0,
    }
    for file, relative in python_files(root, skip):
        if Path(relative).name.startswith("_sysconfigdata"):
            continue  # describes this machine's build, not Python
        try:
            text = file.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            manifest["skipped_files"] += 1
            continue
        if not text.strip():
            continue
        digest.update(relative.encode() + b"\0" + text.encode() + b"\0")
        if heldout_file(relative, heldout_percent):
            target = out / "heldout" / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            manifest["heldout_files"].append(relative)
            manifest["heldout_characters"] += len(text)
            continue
        manifest["train_files"] += 1
        manifest["train_characters"] += len(text)
        for n, doc in enumerate(split_documents(text, doc_chars)):
            target = out / "train" / f"{relative[:-3]}.{n:04d}.py"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(doc, encoding="utf-8")
            manifest["train_documents"] += 1
    manifest["sha256"] = digest.hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
