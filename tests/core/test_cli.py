"""The `zoo` CLI through click's runner, including the error paths."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from click.testing import CliRunner

from codellama_zoo.cli import cli


def run(*args: str):  # noqa: ANN201
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert result.output.startswith("zoo, version ")


def test_models_table_and_filters() -> None:
    result = run("models")
    assert result.exit_code == 0
    assert "codellama-34b-instruct" in result.output
    assert "33.74B" in result.output
    infill = run("models", "--capability", "infill", "--family", "codellama", "--json")
    names = {row["name"] for row in json.loads(infill.output)}
    assert names == {"codellama-7b", "codellama-7b-instruct", "codellama-13b", "codellama-13b-instruct"}
    every_infill = json.loads(run("models", "--capability", "infill", "--json").output)
    assert all("infill" in row["capabilities"] for row in every_infill)
    family = json.loads(run("models", "--family", "codellama", "--json").output)
    assert len(family) == 12


def test_models_bad_filters_are_one_line_errors() -> None:
    result = run("models", "--capability", "fly")
    assert result.exit_code == 2
    assert "unknown capability 'fly'" in result.output
    result = run("models", "--family", "gpt")
    assert result.exit_code == 2
    assert "no models in family 'gpt'; known families: " in result.output
    assert "codellama" in result.output.split("known families: ")[1]


def test_info_by_alias() -> None:
    result = run("info", "codellama/CodeLlama-34b-Instruct-hf")
    assert result.exit_code == 0
    out = result.output
    assert "codellama-34b-instruct" in out
    assert "zoo_codellama.plugin" in out
    assert "ffn_hidden          22016" in out
    assert "bf16 62.85 GiB" in out
    data = json.loads(run("info", "codellama:7b", "--json").output)
    assert data["config"]["ffn_hidden"] == 11008
    assert data["capabilities"] == ["completion", "infill"]


def test_unknown_model_is_one_line_exit_2() -> None:
    result = CliRunner().invoke(cli, ["info", "codellama-35b"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("zoo: error: unknown model 'codellama-35b'; did you mean")
    assert "Traceback" not in result.output


def test_unknown_command_suggests() -> None:
    result = CliRunner().invoke(cli, ["modles"])
    assert result.exit_code == 2
    assert "did you mean models" in result.output


def test_plugins_json_lists_builtins() -> None:
    data = json.loads(run("plugins", "--json").output)
    names = {p["name"] for p in data["plugins"]}
    assert "zoo_codellama.plugin" in names
    entry = next(p for p in data["plugins"] if p["name"] == "zoo_codellama.plugin")
    assert entry["hooks"] == ["register_models"] or "register_models" in entry["hooks"]
    assert data["failures"] == []


def test_help_does_not_import_torch_or_mindspore_and_is_fast() -> None:
    code = (
        "import sys, time; t=time.perf_counter();"
        "from codellama_zoo.cli import cli;"
        "\ntry:\n    cli(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "heavy=[m for m in ('torch','mindspore','transformers') if m in sys.modules];"
        "print(heavy, time.perf_counter()-t)"
    )
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    elapsed = time.perf_counter() - started
    heavy, _ = out.strip().splitlines()[-1].rsplit(" ", 1)
    assert heavy == "[]", f"zoo --help imported {heavy}"
    assert elapsed < 5.0, f"zoo --help took {elapsed:.1f}s"
