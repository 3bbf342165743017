"""Executing samples files: canonical and empty completions, resuming, infilling, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from humaneval_helpers import write_samples

from codellama_zoo.cli import cli
from codellama_zoo.errors import UsageError
from shared_assets import asset
from zoo_humaneval.execute import execute_samples
from zoo_humaneval.problems import load_humaneval, load_infilling
from zoo_humaneval.records import read_records


@pytest.fixture(scope="module")
def problems() -> dict:
    return load_humaneval()


def test_every_canonical_solution_passes(tmp_path: Path, problems: dict) -> None:
    path = write_samples(tmp_path / "samples.jsonl", ((p.task_id, p.canonical_solution) for p in problems.values()))
    summary = execute_samples(path, problems, workers=2, quiet=True)
    assert summary["solved"] == 164
    assert summary["pass@1"] == 1.0
    assert summary["results"] == {"passed": 164}
    results = read_records(tmp_path / "samples.jsonl_results.jsonl")
    assert [r["task_id"] for r in results] == list(problems)  # rewritten in sample order
    on_disk = json.loads((tmp_path / "samples.jsonl_summary.json").read_text())
    assert on_disk["solved"] == 164 and len(on_disk["per_problem"]) == 164


def test_every_empty_completion_fails(tmp_path: Path, problems: dict) -> None:
    path = write_samples(tmp_path / "samples.jsonl", ((task_id, "") for task_id in problems))
    summary = execute_samples(path, problems, workers=2, quiet=True)
    assert summary["solved"] == 0
    assert summary["pass@1"] == 0.0
    assert "passed" not in summary["results"]


def test_pass_at_k_over_several_samples(tmp_path: Path, problems: dict) -> None:
    chosen = list(problems.values())[:3]
    samples = []
    for number, problem in enumerate(chosen):  # problem i gets i+1 correct samples of 10
        for i in range(10):
            samples.append((problem.task_id, problem.canonical_solution if i <= number else "    return None\n"))
    path = write_samples(tmp_path / "s.jsonl", samples)
    summary = execute_samples(path, problems, workers=2, quiet=True)
    expected_pass1 = (0.1 + 0.2 + 0.3) / 3
    assert summary["pass@1"] == pytest.approx(expected_pass1)
    assert summary["pass@10"] == 1.0
    assert "pass@100" not in summary
    assert summary["solved"] == 3 and summary["total_problems"] == 164


def test_interrupted_run_resumes_without_redoing_work(tmp_path: Path, problems: dict) -> None:
    chosen = list(problems.values())[:12]
    path = write_samples(tmp_path / "samples.jsonl", ((p.task_id, p.canonical_solution) for p in chosen))
    seen: list[int] = []

    def stop_after_five(record: dict) -> None:
        seen.append(record["sample_index"])
        if len(seen) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute_samples(path, problems, workers=2, quiet=True, on_result=stop_after_five)
    results_path = tmp_path / "samples.jsonl_results.jsonl"
    partial = read_records(results_path)
    assert sorted(r["sample_index"] for r in partial) == sorted(seen)  # nothing lost
    with open(results_path, "a") as handle:  # a write torn by the interruption
        handle.write('{"sample_index": 11, "task_id": "HumanEval/11", "compl')

    rerun: list[int] = []
    summary = execute_samples(path, problems, workers=2, quiet=True, on_result=lambda r: rerun.append(r["sample_index"]))
    assert sorted(rerun) == sorted(set(range(12)) - set(seen))
    assert summary["solved"] == 12

    again: list[int] = []
    execute_samples(path, problems, workers=2, quiet=True, on_result=lambda r: again.append(r["sample_index"]))
    assert again == []


def test_a_changed_completion_is_executed_again(tmp_path: Path, problems: dict) -> None:
    first = problems["HumanEval/0"]
    path = write_samples(tmp_path / "s.jsonl", [(first.task_id, first.canonical_solution)])
    assert execute_samples(path, problems, workers=1, quiet=True)["solved"] == 1
    write_samples(path, [(first.task_id, "    return False\n")])
    assert execute_samples(path, problems, workers=1, quiet=True)["solved"] == 0


def test_bad_samples_are_usage_errors(tmp_path: Path, problems: dict) -> None:
    path = write_samples(tmp_path / "s.jsonl", [("HumanEval/9999", "")])
    with pytest.raises(UsageError, match="not in the problems .*HumanEval/9999"):
        execute_samples(path, problems, quiet=True)
    path.write_text('{"task_id": "HumanEval/0"}\n')
    with pytest.raises(UsageError, match="'completion'"):
        execute_samples(path, problems, quiet=True)
    path.write_text('not json\n{"task_id": "HumanEval/0", "completion": ""}\n')
    with pytest.raises(UsageError, match=r"s.jsonl:1: not a JSON record"):
        execute_samples(path, problems, quiet=True)


@pytest.mark.slow
def test_single_line_infilling_canonical_solutions_all_pass(tmp_path: Path) -> None:
    folder = asset("humaneval-infilling/HumanEval-SingleLineInfilling.jsonl.gz").parent
    problems = load_infilling("single-line", folder)
    assert len(problems) == 1033
    path = write_samples(tmp_path / "s.jsonl", ((p.task_id, p.canonical_solution) for p in problems.values()))
    summary = execute_samples(path, problems, workers=2, quiet=True)
    failures = [r for r in read_records(tmp_path / "s.jsonl_results.jsonl") if not r["passed"]]
    assert failures == []
    assert summary["solved"] == 1033


def test_infilling_wrong_middles_fail(tmp_path: Path) -> None:
    folder = asset("humaneval-infilling/HumanEval-SingleLineInfilling.jsonl.gz").parent
    problems = load_infilling("single-line", folder)
    chosen = list(problems.values())[:20]
    path = write_samples(tmp_path / "s.jsonl", ((p.task_id, "") for p in chosen))
    assert execute_samples(path, problems, workers=2, quiet=True)["solved"] < 20


def test_cli_execute_recognises_the_benchmark_and_writes_results(tmp_path: Path, problems: dict) -> None:
    chosen = list(problems.values())[:6]
    samples = [(p.task_id, p.canonical_solution) for p in chosen[:4]] + [(p.task_id, "") for p in chosen[4:]]
    path = write_samples(tmp_path / "samples.jsonl", samples)
    result = CliRunner().invoke(cli, ["eval", "execute", str(path), "-j", "2", "--results", str(tmp_path / "r.jsonl")])
    assert result.exit_code == 0, result.output
    assert "solved    4/6" in result.output
    assert "pass@1" in result.output and "66.67%" in result.output
    assert len(read_records(tmp_path / "r.jsonl")) == 6
    as_json = CliRunner().invoke(cli, ["eval", "execute", str(path), "--json", "--results", str(tmp_path / "r.jsonl")])
    assert json.loads(as_json.output)["solved"] == 4


def test_cli_execute_infilling_with_data_dir(tmp_path: Path) -> None:
    folder = asset("humaneval-infilling/HumanEval-RandomSpanInfillingLight.jsonl.gz").parent
    problems = load_infilling("random-span-light", folder)
    chosen = list(problems.values())[:5]
    path = write_samples(tmp_path / "s.jsonl", ((p.task_id, p.canonical_solution) for p in chosen))
    result = CliRunner().invoke(cli, ["eval", "execute", str(path), "--data-dir", str(folder), "-q"])
    assert result.exit_code == 0, result.output
    assert "solved    5/5" in result.output


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    path = write_samples(tmp_path / "s.jsonl", [("SingleLineInfilling/HumanEval/0/L0", "")])
    result = CliRunner().invoke(cli, ["eval", "execute", str(path), "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "not found in" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["eval", "execute", str(path), "--k", "one"])
    assert result.exit_code == 2 and "--k must be comma-separated" in result.output


def test_gzipped_samples_are_read(tmp_path: Path, problems: dict) -> None:
    import gzip

    path = tmp_path / "samples.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        for problem in list(problems.values())[:3]:
            handle.write(json.dumps({"task_id": problem.task_id, "completion": problem.canonical_solution}) + "\n")
    summary = execute_samples(path, problems, workers=2, quiet=True)
    assert summary["solved"] == 3
    assert (tmp_path / "samples.jsonl.gz_results.jsonl").exists()
