"""``zoo eval`` on a tiny random checkpoint through the real ``codellama_zoo.load``.

A random model solves nothing; what is checked is the plumbing: the real
loader, prompt formats and generators drive the driver, samples and results
are written, and a model that cannot infill is refused before loading.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from codellama_zoo import plugins
from codellama_zoo.cli import cli
from codellama_zoo.errors import CapabilityError
from zoo_humaneval import evaluate
from zoo_humaneval.generate import GenerationOptions
from zoo_humaneval.records import read_records

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "e2e"))
from tiny_zoo import BUILTINS, TinyModels, write_checkpoint  # noqa: E402

from codellama_vocab import build_codellama_model  # noqa: E402
from shared_assets import asset  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture
def tiny_zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "zoo-home"))
    pm = plugins.make_plugin_manager(builtins=(*BUILTINS, "zoo_humaneval.plugin"), entry_points=False)
    pm.add_plugin(TinyModels(), "tiny_models")
    plugins.set_plugin_manager(pm)
    yield


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random checkpoint in the 7B layout (32,016 pieces: it can infill)."""
    pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("tiny-7b")
    tokenizer = build_codellama_model(asset("llama2-tokenizer/tokenizer.model"), folder / "codellama-tokenizer.model")
    return write_checkpoint(folder / "checkpoint", tokenizer, 32016)


@pytest.mark.usefixtures("tiny_zoo")
def test_humaneval_through_the_library_api(tmp_path: Path, checkpoint: Path) -> None:
    summary = evaluate.run_humaneval(
        "tiny-codellama-7b", output=tmp_path, load=evaluate.LoadOptions(weights=str(checkpoint), device="cpu"),
        n_samples=2, options=GenerationOptions(max_new_tokens=12, temperature=0.8, batch_size=4),
        limit=3, workers=2, quiet=True,
    )
    samples = read_records(tmp_path / "samples.jsonl")
    assert sorted(s["task_id"] for s in samples) == ["HumanEval/0"] * 2 + ["HumanEval/1"] * 2 + ["HumanEval/2"] * 2
    assert all(isinstance(s["raw"], str) and s["raw"] for s in samples)
    assert summary["samples"] == 6 and summary["problems"] == 3
    assert set(summary) >= {"pass@1", "solved", "results"}
    assert len(read_records(tmp_path / "results.jsonl")) == 6


@pytest.mark.usefixtures("tiny_zoo")
def test_cli_infilling_through_the_library_api(tmp_path: Path, checkpoint: Path) -> None:
    folder = asset("humaneval-infilling/HumanEval-SingleLineInfilling.jsonl.gz").parent
    result = CliRunner().invoke(cli, [
        "eval", "humaneval-infilling", "tiny-codellama-7b", "--split", "single-line", "--data-dir", str(folder),
        "--weights", str(checkpoint), "--device", "cpu", "--limit", "2", "--max-new-tokens", "8", "-j", "2",
        "-o", str(tmp_path), "-q",
    ])
    assert result.exit_code == 0, result.output
    assert "solved" in result.output and "/2" in result.output
    assert len(read_records(tmp_path / "samples.jsonl")) == 2


@pytest.mark.usefixtures("tiny_zoo")
def test_python_variant_is_refused_before_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import codellama_zoo

    monkeypatch.setattr(codellama_zoo, "load", lambda *a, **k: pytest.fail("weights were loaded"))
    with pytest.raises(CapabilityError, match="tiny-codellama-7b-python"):
        evaluate.run_humaneval_infilling("tiny-codellama-7b-python", split="single-line", output=tmp_path)


@pytest.mark.usefixtures("tiny_zoo")
def test_batched_infills_equal_one_by_one(tmp_path: Path, checkpoint: Path) -> None:
    import codellama_zoo
    from zoo_humaneval.generate import generate_infills
    from zoo_humaneval.problems import load_infilling

    folder = asset("humaneval-infilling/HumanEval-SingleLineInfilling.jsonl.gz").parent
    problems = dict(list(load_infilling("single-line", folder).items())[:4])
    model = codellama_zoo.load("tiny-codellama-7b", weights=checkpoint, device="cpu")
    generate_infills(model, problems, tmp_path / "s.jsonl", "single-line",
                     options=GenerationOptions(max_new_tokens=6, batch_size=4), quiet=True)
    batched = {r["task_id"]: r["raw"] for r in read_records(tmp_path / "s.jsonl")}
    one_by_one = {t: model.infill(p.prompt, p.suffix or "", max_new_tokens=6, temperature=0.0)
                  for t, p in problems.items()}
    assert any(batched.values())
    assert batched == one_by_one
