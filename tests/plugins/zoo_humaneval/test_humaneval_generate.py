"""The generation driver and ``zoo eval humaneval`` with a fake model that follows the library API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from codellama_zoo.cli import cli
from codellama_zoo.errors import CapabilityError
from codellama_zoo.registry import get_registry
from shared_assets import asset
from zoo_humaneval import evaluate
from zoo_humaneval.generate import GenerationOptions, generate_completions
from zoo_humaneval.problems import load_humaneval, load_infilling
from zoo_humaneval.records import read_records


class FakeModel:
    """Answers with the canonical solution plus trailing junk, like a model that runs on."""

    name = "fake"

    def __init__(self, problems: dict, wrong_every: int = 0) -> None:
        self.by_prompt = {p.prompt: p for p in problems.values()}
        self.by_prefix = {(p.prompt, p.suffix): p for p in problems.values()}
        self.calls: list[dict[str, Any]] = []
        self.wrong_every = wrong_every
        self.produced = 0

    def generate(self, prompts: list[str], *, max_new_tokens: int = 256, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int | None = None, stop: tuple[str, ...] = ()) -> list[str]:
        self.calls.append({"prompts": list(prompts), "temperature": temperature, "seed": seed, "stop": stop,
                           "max_new_tokens": max_new_tokens})
        texts = []
        for prompt in prompts:
            self.produced += 1
            if self.wrong_every and self.produced % self.wrong_every == 0:
                texts.append("    return None\n\ndef unrelated():\n    pass\n")
            else:
                texts.append(self.by_prompt[prompt].canonical_solution + "\n\nprint(check)\nassert False\n")
        return texts

    def infill(self, prefix: str, suffix: str, *, max_new_tokens: int = 256, temperature: float = 0.0,
               seed: int | None = None) -> str:
        self.calls.append({"prefix": prefix, "suffix": suffix})
        return self.by_prefix[(prefix, suffix)].canonical_solution


@pytest.fixture(scope="module")
def problems() -> dict:
    return load_humaneval()


def test_batches_unstripped_prompts_and_postprocesses(tmp_path: Path, problems: dict) -> None:
    chosen = dict(list(problems.items())[:5])
    model = FakeModel(chosen)
    path = tmp_path / "samples.jsonl"
    made = generate_completions(model, chosen, path, n_samples=2,
                                options=GenerationOptions(batch_size=4, max_new_tokens=64), quiet=True)
    assert made == 10
    assert [len(c["prompts"]) for c in model.calls] == [4, 4, 2]
    sent = [p for c in model.calls for p in c["prompts"]]
    assert sorted(sent) == sorted(p.prompt for p in chosen.values() for _ in range(2))  # exactly, not stripped
    assert [len(p) for p in sent] == sorted(len(p) for p in sent)  # batched by length: little padding
    assert all(p.endswith("\n") for p in sent)
    assert model.calls[0]["stop"] == ("\ndef", "\nclass", "\nif", "\nprint", "\n#")
    assert model.calls[0]["max_new_tokens"] == 64
    records = read_records(path)
    assert sorted(r["task_id"] for r in records) == sorted(t for t in chosen for _ in range(2))
    for record in records:
        assert record["completion"] == chosen[record["task_id"]].canonical_solution + "\n"
        assert "assert False" in record["raw"]


def test_generation_resumes_where_it_stopped(tmp_path: Path, problems: dict) -> None:
    chosen = dict(list(problems.items())[:4])
    path = tmp_path / "samples.jsonl"
    model = FakeModel(chosen)
    generate_completions(model, dict(list(chosen.items())[:2]), path, n_samples=3, quiet=True)
    with open(path, "a") as handle:
        handle.write('{"task_id": "HumanEval/2", "compl')  # interrupted mid-write
    again = FakeModel(chosen)
    made = generate_completions(again, chosen, path, n_samples=3,
                                options=GenerationOptions(batch_size=8), quiet=True)
    assert made == 6
    assert sorted(p for c in again.calls for p in c["prompts"]) == sorted(
        [chosen["HumanEval/2"].prompt] * 3 + [chosen["HumanEval/3"].prompt] * 3)
    counts = [r["task_id"] for r in read_records(path)]
    assert sorted(counts) == sorted([t for t in chosen for _ in range(3)])
    assert generate_completions(FakeModel(chosen), chosen, path, n_samples=3, quiet=True) == 0


def test_seeds_differ_per_batch_and_are_reproducible(tmp_path: Path, problems: dict) -> None:
    chosen = dict(list(problems.items())[:3])
    seeds = []
    for run in range(2):
        model = FakeModel(chosen)
        generate_completions(model, chosen, tmp_path / f"{run}.jsonl", n_samples=2,
                             options=GenerationOptions(batch_size=2, temperature=0.8, seed=5), quiet=True)
        seeds.append([c["seed"] for c in model.calls])
    assert seeds[0] == seeds[1]
    assert len(set(seeds[0])) == 3


def test_run_humaneval_end_to_end_with_a_fake_model(tmp_path: Path, problems: dict) -> None:
    model = FakeModel(problems, wrong_every=3)
    summary = evaluate.run_humaneval(model, output=tmp_path, n_samples=3, limit=6, workers=2, quiet=True)
    assert summary["problems"] == 6 and summary["total_problems"] == 6
    assert summary["solved"] == 6
    assert summary["pass@1"] == pytest.approx(2 / 3)
    assert "pass@10" not in summary
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["model"] == "fake" and on_disk["benchmark"] == "humaneval"
    assert len(read_records(tmp_path / "results.jsonl")) == 18


def test_infilling_driver_with_a_fake_model(tmp_path: Path) -> None:
    folder = asset("humaneval-infilling/HumanEval-SingleLineInfilling.jsonl.gz").parent
    problems = load_infilling("single-line", folder)
    model = FakeModel(problems)
    summary = evaluate.run_humaneval_infilling(model, split="single-line", data_dir=folder, output=tmp_path,
                                               limit=8, workers=2, quiet=True)
    assert summary["solved"] == 8
    assert summary["benchmark"] == "humaneval-infilling:single-line"
    assert len(model.calls) == 8 and model.calls[0]["suffix"]


def test_cli_humaneval_uses_the_library_loader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, problems: dict) -> None:
    loaded: list[tuple[str, dict]] = []

    def fake_load(name: str, options: evaluate.LoadOptions) -> FakeModel:
        loaded.append((name, options.kwargs()))
        return FakeModel(problems)

    monkeypatch.setattr(evaluate, "load_model", fake_load)
    out = tmp_path / "out"
    args = ["eval", "humaneval", "codellama-7b", "--weights", str(tmp_path), "--dtype", "bf16", "--limit", "3",
            "-j", "2", "-o", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "solved    3/3" in result.output
    assert loaded == [("codellama-7b", {"weights": str(tmp_path), "dtype": "bf16"})]
    rerun = CliRunner().invoke(cli, args)  # resumes: nothing to generate, nothing to execute
    assert rerun.exit_code == 0 and "solved    3/3" in rerun.output
    assert len(read_records(out / "samples.jsonl")) == 3


def test_infilling_refuses_a_model_that_cannot_infill_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_load(*args: Any) -> None:
        raise AssertionError("weights were loaded")

    monkeypatch.setattr(evaluate, "load_model", must_not_load)
    with pytest.raises(CapabilityError, match="codellama-7b-python.* cannot infill"):
        evaluate.run_humaneval_infilling("codellama-7b-python", split="single-line", output=tmp_path)
    result = CliRunner().invoke(cli, ["eval", "humaneval-infilling", "codellama-34b", "--split", "single-line"])
    assert result.exit_code == 2
    assert "cannot infill" in result.output and "codellama-7b" in result.output


def test_evaluations_are_registered() -> None:
    evaluations = get_registry().evaluations
    assert evaluations.get("humaneval").requires == ("completion",)
    assert evaluations.get("humaneval-infilling").requires == ("infill",)
    assert evaluations.plugin_of("humaneval") == "zoo_humaneval.plugin"
