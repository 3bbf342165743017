"""Python source → instruction/response pairs: docstring (and signature) → function code.

Every function or method with a docstring and a real body becomes one pair:
the instruction asks for the function by its signature and docstring, the
response is the function's code with the docstring removed. Files are split
into ``train`` and ``heldout`` by a hash of their path relative to the input
root, so a held-out function (and every other function of its file) is never
trained on, whatever the machine or the order files are read in.
"""

from __future__ import annotations

import ast
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from zoo_datasets.errors import DatasetError

SPLITS = ("train", "heldout", "all")
DEFAULT_SKIP_DIRS = "test,tests,idle_test,__pycache__,site-packages"
_TRIVIAL_BODIES = ("pass", "...", "raise NotImplementedError", "raise NotImplementedError()")


def heldout_file(relative_path: str | Path, percent: float) -> bool:
    """Whether a file belongs to the held-out split: a stable hash of its POSIX relative path."""
    key = Path(relative_path).as_posix().encode("utf-8")
    bucket = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % 10_000
    return bucket < percent * 100


@attrs.frozen(kw_only=True)
class FunctionExample:
    """One documented function, with the pieces evaluations need."""

    path: str  # relative to the input root, POSIX
    qualname: str  # Class.method or function
    signature: str  # the ``def`` header, dedented, up to and including its colon
    docstring: str  # cleaned (inspect.cleandoc), without quotes
    code: str  # the whole function, dedented, docstring removed
    lineno: int

    def instruction(self) -> str:
        owner = self.qualname.rpartition(".")[0]
        where = f" as a method of class `{owner}`" if owner else ""
        return f"Write a Python function `{self.signature}`{where}.\n\n{self.docstring}"

    def conversation(self) -> dict[str, Any]:
        return {
            "id": f"{self.path}::{self.qualname}",
            "conversations": [
                {"from": "human", "value": self.instruction()},
                {"from": "gpt", "value": self.code},
            ],
        }


def _dedent(lines: list[str], indent: int) -> list[str] | None:
    """Strip ``indent`` columns from every line, or ``None`` if a line is less indented."""
    out = []
    for line in lines:
        if not line.strip():
            out.append(line.lstrip(" \t") if line.endswith("\n") else "")
            continue
        if len(line) - len(line.lstrip(" ")) < indent:
            return None
        out.append(line[indent:])
    return out


def _functions(tree: ast.AST) -> Iterator[tuple[ast.FunctionDef | ast.AsyncFunctionDef, str]]:
    """Functions and methods with qualified names (nested functions included)."""
    stack: list[tuple[ast.AST, str]] = [(tree, "")]
    while stack:
        node, prefix = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                yield child, name
                stack.append((child, f"{name}.<locals>."))
            elif isinstance(child, ast.ClassDef):
                stack.append((child, f"{prefix}{child.name}."))
            else:
                stack.append((child, prefix))


def extract_functions(text: str, path: str = "<string>") -> list[FunctionExample]:
    """Every documented function in ``text`` with a non-trivial body, in source order."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    lines = text.splitlines(keepends=True)
    found = []
    for node, qualname in _functions(tree):
        docstring = ast.get_docstring(node)
        if not docstring or not docstring.strip() or "<locals>" in qualname:
            continue
        doc_node = node.body[0]
        rest = node.body[1:]
        if not rest or node.end_lineno is None or doc_node.end_lineno is None:
            continue
        if len(rest) == 1 and ast.unparse(rest[0]).strip() in _TRIVIAL_BODIES:
            continue
        header = _dedent(lines[node.lineno - 1 : doc_node.lineno - 1], node.col_offset)
        body = _dedent(lines[doc_node.end_lineno : node.end_lineno], node.col_offset)
        if header is None or body is None or not header:
            continue
        signature = "".join(header).strip()
        if not signature.endswith(":") or signature.count("\n") > 8:
            continue  # a comment or code after the colon; or a huge header
        code = "".join(header) + "".join(body)
        if not code.endswith("\n"):
            code += "\n"
        found.append(
            FunctionExample(
                path=path, qualname=qualname, signature=" ".join(signature.split()), docstring=docstring.strip(),
                code=code, lineno=node.lineno,
            )
        )
    found.sort(key=lambda f: f.lineno)
    return found


def python_files(root: Path, skip_dirs: set[str]) -> list[tuple[Path, str]]:
    """``(file, path relative to root)`` for every ``.py`` file, sorted, skipping ``skip_dirs``."""
    if root.is_file():
        return [(root, root.name)]
    files = []
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in skip_dirs)
        for name in sorted(names):
            if name.endswith(".py"):
                file = Path(directory) / name
                files.append((file, file.relative_to(root).as_posix()))
    return sorted(files, key=lambda item: item[1])


def iter_examples(
    path: str | Path, split: str = "train", heldout_percent: float = 5.0, skip_dirs: str = DEFAULT_SKIP_DIRS,
    stats: dict[str, Any] | None = None,
) -> Iterator[FunctionExample]:
    """The :class:`FunctionExample` records of one split of a source tree."""
    root = Path(path)
    if split not in SPLITS:
        raise DatasetError(root, f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    if not 0 <= heldout_percent <= 100:
        raise DatasetError(root, f"heldout_percent must be between 0 and 100, got {heldout_percent}")
    if not root.exists():
        raise DatasetError(root, "does not exist; pass a Python file or a directory of Python source")
    skip = {d.strip() for d in skip_dirs.split(",") if d.strip()}
    files = python_files(root, skip)
    if not files:
        raise DatasetError(root, "holds no .py files")
    counts = stats if stats is not None else {}
    for key in ("files", "heldout_files", "unreadable_files", "functions"):
        counts.setdefault(key, 0)
    for file, relative in files:
        held = heldout_file(relative, heldout_percent)
        counts["heldout_files" if held else "files"] += 1
        if split != "all" and held != (split == "heldout"):
            continue
        try:
            text = file.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            counts["unreadable_files"] += 1
            continue
        for example in extract_functions(text, relative):
            counts["functions"] += 1
            yield example


def read(
    path: str | Path, split: str = "train", heldout_percent: float = 5.0, skip_dirs: str = DEFAULT_SKIP_DIRS,
    stats: dict[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Conversation records (human: instruction, gpt: code) of one split of a source tree."""
    for example in iter_examples(path, split, heldout_percent, skip_dirs, stats):
        yield example.conversation()


def preprocess(
    records: Iterator[dict[str, Any]], tokenizer: Any, seq_length: int, stats: dict[str, Any],
    template: str = "inst", drop_truncated: bool = True,
) -> Iterator[dict[str, Any]]:
    """Prompt-masked samples; pairs longer than ``seq_length + 1`` tokens are dropped (counted) by default."""
    from zoo_datasets.alpaca import IGNORE_INDEX, fit, tokenize_conversation

    stats.update(documents=0, samples=0, tokens=0, truncated=0, dropped_too_long=0, label_tokens=0)
    for conversation in records:
        stats["documents"] += 1
        ids, labels = tokenize_conversation(tokenizer, conversation, template)
        if len(ids) > seq_length + 1 and drop_truncated:
            stats["dropped_too_long"] += 1
            continue
        input_ids, out_labels, truncated = fit(ids, labels, seq_length + 1, tokenizer.pad_id)
        stats["samples"] += 1
        stats["tokens"] += min(len(ids), seq_length + 1)
        stats["truncated"] += int(truncated)
        stats["label_tokens"] += int((out_labels != IGNORE_INDEX).sum())
        yield {"input_ids": input_ids, "labels": out_labels}
