"""The codelet family's pieces that need no trained weights: specs, corpus, metrics, pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from codellama_zoo.errors import UsageError, WeightsError
from codellama_zoo.registry import get_registry
from zoo_codelet import presets
from zoo_codelet.corpus import build_corpus, split_documents
from zoo_codelet.evaluate import InfillTask, cut_function, exact, infill_tasks, parses
from zoo_codelet.pipeline import Pipeline
from zoo_datasets.docstrings import heldout_file
from zoo_generators.commands import DEFAULT_MODEL, _looks_like_prompt


def test_specs_are_code_llama_architecture_scaled_down() -> None:
    registry = get_registry()
    base = registry.model("zoo-codelet-5m")
    instruct = registry.model("codelet-instruct")
    cfg = base.config
    assert cfg.rope_theta == 1e6 and cfg.n_heads == 4 * cfg.kv_heads  # Code Llama's theta; GQA
    assert 3e6 < cfg.param_count() < 10e6
    assert base.capabilities == {"completion", "infill"}
    assert instruct.capabilities == {"completion", "infill", "chat"}
    assert instruct.prompt_format == "codellama-instruct"
    assert base.family == instruct.family == "codelet" and "llama" not in base.name
    assert registry.model(DEFAULT_MODEL) is instruct


def test_missing_shipped_weights_say_how_to_rebuild(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presets, "WEIGHTS_ROOT", tmp_path)
    with pytest.raises(WeightsError, match="make default-model"):
        presets.shipped_weights(presets.BASE_NAME)


def test_documents_rejoin_to_the_file_and_stay_short() -> None:
    text = "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(200)) + "y = 1\n" * 500
    docs = split_documents(text, doc_chars=300)
    assert "".join(docs) == text
    assert all(len(d) <= 300 for d in docs)
    assert docs[0].startswith("def f0") and docs[1].startswith("def f")  # cut at blank lines


def test_corpus_splits_by_file_hash_and_skips_tests(tmp_path: Path) -> None:
    src = tmp_path / "lib"
    for i in range(30):
        (src / "pkg").mkdir(parents=True, exist_ok=True)
        (src / "pkg" / f"m{i}.py").write_text(f"def f{i}():\n    return {i}\n")
    (src / "test").mkdir()
    (src / "test" / "test_x.py").write_text("assert True\n")
    (src / "_sysconfigdata_x.py").write_text("build = {}\n")
    manifest = build_corpus(tmp_path / "out", src, heldout_percent=20)
    held = {f"pkg/m{i}.py" for i in range(30) if heldout_file(f"pkg/m{i}.py", 20)}
    assert set(manifest["heldout_files"]) == held and held
    assert manifest["train_files"] == 30 - len(held)
    trained = {p.relative_to(tmp_path / "out" / "train").as_posix() for p in (tmp_path / "out" / "train").rglob("*.py")}
    assert all(not t.startswith("test/") and "_sysconfigdata" not in t for t in trained)
    assert not {t.rsplit(".", 2)[0] + ".py" for t in trained} & held


def test_exact_match_compares_the_first_line() -> None:
    assert exact("    return x\nmore", "    return x")
    assert exact("    return x   ", "    return x")
    assert not exact("return x", "    return x")  # indentation matters


def test_cut_function_stops_at_the_next_top_level_line() -> None:
    prompt = 'def f(x):\n    """Double."""\n'
    assert cut_function(prompt, "    return 2 * x\n\ndef g():\n", finished=False) == prompt + "    return 2 * x\n\n"
    # Stopped by the token limit: the last, possibly partial, line is dropped.
    assert cut_function(prompt, "    y = 2 * x\n    return y +", finished=False) == prompt + "    y = 2 * x\n"
    assert parses(prompt + "    return 2 * x\n")
    assert not parses(prompt)  # a docstring alone is not a completion
    assert not parses(prompt + "    if x:\n")
    # A chat answer starts with its own def line.
    answer = "def f(x):\n    return 2 * x\nprint(f(2))\n"
    assert cut_function("", answer, finished=True) == "def f(x):\n    return 2 * x\n"
    assert parses(cut_function("", answer, finished=True))


def test_infill_tasks_remove_one_body_line() -> None:
    source = 'import os\n\n\ndef f(path):\n    """Doc."""\n    full = os.path.join(path, "x")\n    return full\n'
    (task,) = infill_tasks([("m.py", source)])
    assert isinstance(task, InfillTask)
    assert task.prefix + task.middle + task.suffix == source
    assert task.middle == "    return full"  # the middle one of the statement lines


def test_pipeline_rejects_unknown_steps(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown step 'train'; steps: corpus, tokenizer"):
        Pipeline(tmp_path).run(from_step="train")


@pytest.mark.parametrize(
    ("text", "is_prompt"),
    [("def f(x):", True), ("codellama-7b", False), ("zoo-codelet-5m", False), ("-", True), ("a b", True)],
)
def test_zoo_run_tells_prompts_from_model_names(text: str, is_prompt: bool) -> None:
    assert _looks_like_prompt(text) is is_prompt
