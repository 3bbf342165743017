"""The docstring → code instruction dataset: extraction, held-out split, samples."""

from __future__ import annotations

import ast
import sysconfig
from pathlib import Path

import pytest

from codellama_zoo.registry import get_registry
from zoo_datasets.alpaca import IGNORE_INDEX
from zoo_datasets.docstrings import extract_functions, heldout_file, iter_examples, preprocess, read
from zoo_datasets.errors import DatasetError

SOURCE = '''\
import os


def add(a: int, b: int = 2) -> int:
    """Add two numbers.

    Returns their sum.
    """
    total = a + b
    return total


def undocumented(x):
    return x


class Box:
    """A box."""

    def get(self,
            key):
        """Look ``key`` up."""
        # a comment stays
        return self.data[key]

    def abstract(self):
        """Subclasses do this."""
        raise NotImplementedError

    def nested(self):
        """Has an inner function."""
        def inner():
            """Never a pair of its own."""
            return 1
        return inner()
'''


def test_extracts_documented_functions_with_real_bodies() -> None:
    found = {f.qualname: f for f in extract_functions(SOURCE, "pkg/mod.py")}
    assert sorted(found) == ["Box.get", "Box.nested", "add"]
    add = found["add"]
    assert add.signature == "def add(a: int, b: int = 2) -> int:"
    assert add.docstring == "Add two numbers.\n\nReturns their sum."
    assert add.code == "def add(a: int, b: int = 2) -> int:\n    total = a + b\n    return total\n"
    get = found["Box.get"]
    assert get.signature == "def get(self, key):"
    assert get.code.startswith("def get(self,\n        key):\n    # a comment stays\n")
    for example in found.values():
        ast.parse(example.code)  # dedented, docstring removed, still valid Python
        assert '"""' not in example.code.splitlines()[1]


def test_conversation_asks_by_signature_and_docstring() -> None:
    get = next(f for f in extract_functions(SOURCE, "pkg/mod.py") if f.qualname == "Box.get")
    record = get.conversation()
    assert record["id"] == "pkg/mod.py::Box.get"
    human, gpt = record["conversations"]
    assert "`def get(self, key):`" in human["value"] and "class `Box`" in human["value"]
    assert "Look ``key`` up." in human["value"]
    assert gpt == {"from": "gpt", "value": get.code}


def test_unparsable_source_gives_nothing() -> None:
    assert extract_functions("def broken(:\n", "x.py") == []


def test_heldout_split_is_by_file_and_stable(tmp_path: Path) -> None:
    for i in range(40):
        (tmp_path / f"m{i}.py").write_text(SOURCE.replace("add", f"add{i}"))
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.py").write_text(SOURCE)
    stats: dict = {}
    train = {r["id"] for r in read(tmp_path, split="train", heldout_percent=20, stats=stats)}
    held = {r["id"] for r in read(tmp_path, split="heldout", heldout_percent=20)}
    assert train and held and not train & held
    assert {i.split("::")[0] for i in train}.isdisjoint({i.split("::")[0] for i in held})
    assert not any(i.startswith("tests/") for i in train | held)  # test dirs are skipped
    expected = {f"m{i}.py" for i in range(40) if heldout_file(f"m{i}.py", 20)}
    assert {i.split("::")[0] for i in held} == expected
    assert stats["heldout_files"] == len(expected) and stats["files"] == 40 - len(expected)


def test_heldout_hash_is_a_fixed_function() -> None:
    # Pinned so the codelet model card's held-out files never silently change.
    assert [heldout_file(p, 5) for p in ("json/encoder.py", "uuid.py", "pickle.py", "ast.py")] == [
        False, True, True, False,
    ]
    assert not heldout_file("anything.py", 0) and heldout_file("anything.py", 100)


def test_stdlib_gives_thousands_of_pairs() -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    examples = list(iter_examples(stdlib / "json", split="all"))
    assert len(examples) > 10
    assert all(e.path.endswith(".py") for e in examples)


class _Tok:
    bos_id, eos_id, pad_id = 1, 2, 0

    def encode(self, text: str) -> list[int]:
        return [3 + (ord(c) % 50) for c in text]


def test_preprocess_masks_the_prompt_and_drops_long_pairs() -> None:
    records = [f.conversation() for f in extract_functions(SOURCE, "m.py")]
    stats: dict = {}
    samples = list(preprocess(iter(records), _Tok(), 200, stats))
    assert stats["dropped_too_long"] == len(records) - len(samples) > 0
    for sample in samples:
        labels = sample["labels"]
        learned = labels[labels != IGNORE_INDEX]
        assert learned[-1] == 2  # the answer ends with EOS
        assert len(sample["input_ids"]) == 201
    kept = list(preprocess(iter(records), _Tok(), 200, {}, drop_truncated=False))
    assert len(kept) == len(records)


def test_bad_options_name_the_value(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(SOURCE)
    with pytest.raises(DatasetError, match="unknown split 'dev'"):
        list(read(tmp_path, split="dev"))
    with pytest.raises(DatasetError, match="does not exist"):
        list(read(tmp_path / "missing"))
    with pytest.raises(DatasetError, match="between 0 and 100"):
        list(read(tmp_path, heldout_percent=150))


def test_registered_with_the_datasets_plugin() -> None:
    spec = get_registry().datasets.get("docstrings")
    assert spec.read is read and "split" in spec.options
