"""Loading HumanEval and the infilling splits; recognising a samples file's benchmark."""

from __future__ import annotations

from pathlib import Path

import pytest

from codellama_zoo.errors import UsageError
from shared_assets import asset
from zoo_humaneval.problems import (
    INFILLING_SPLITS,
    detect_benchmark,
    load_benchmark,
    load_humaneval,
    load_infilling,
    read_problems_file,
)


def test_humaneval_has_164_problems_with_unstripped_prompts() -> None:
    problems = load_humaneval()
    assert len(problems) == 164
    first = problems["HumanEval/0"]
    assert first.prompt.endswith('"""\n')
    assert first.entry_point == "has_close_elements"
    program = first.program(first.canonical_solution)
    assert program.startswith(first.prompt + first.canonical_solution)
    assert program.rstrip().endswith("check(has_close_elements)")


@pytest.mark.parametrize(("split", "count"), [("single-line", 1033), ("multi-line", 5815),
                                               ("random-span", 1640), ("random-span-light", 164)])
def test_infilling_splits(split: str, count: int) -> None:
    folder = asset(f"humaneval-infilling/{INFILLING_SPLITS[split]}").parent
    problems = load_infilling(split, folder)
    assert len(problems) == count
    problem = next(iter(problems.values()))
    assert problem.is_infilling
    assert problem.program("MIDDLE").startswith(problem.prompt + "MIDDLE" + (problem.suffix or ""))
    assert detect_benchmark(problems) == f"humaneval-infilling:{split}"


def test_data_dir_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    folder = asset("humaneval-infilling/HumanEval-SingleLineInfilling.jsonl.gz").parent
    monkeypatch.setenv("ZOO_HUMANEVAL_INFILLING_DIR", str(folder))
    assert len(load_benchmark("humaneval-infilling:single-line")) == 1033


def test_missing_data_names_the_folder_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"not found in .*--data-dir"):
        load_infilling("single-line", tmp_path)
    with pytest.raises(UsageError, match="unknown HumanEval-infilling split 'two-line'"):
        load_infilling("two-line", tmp_path)
    with pytest.raises(UsageError, match="unknown problems"):
        load_benchmark("mbpp")


def test_detect_benchmark() -> None:
    assert detect_benchmark(["HumanEval/0", "HumanEval/3"]) == "humaneval"
    with pytest.raises(UsageError, match="mix benchmarks"):
        detect_benchmark(["HumanEval/0", "SingleLineInfilling/HumanEval/0/L0"])


def test_problems_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"task_id": "x", "prompt": "p"}\n')
    with pytest.raises(UsageError, match="lacks test, entry_point"):
        read_problems_file(bad)
