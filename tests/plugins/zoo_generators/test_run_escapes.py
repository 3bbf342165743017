"""Command-line text: `\\n` typed in a shell argument becomes a newline (like llama.cpp)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from codellama_zoo.cli import cli
from zoo_generators.commands import _unescape


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        (r"def f(x):\n    return x", "def f(x):\n    return x"),
        (r"a\tb", "a\tb"),
        (r"keep \\n literal", "keep \\n literal"),
        (r"C:\path\x", r"C:\path\x"),  # unknown escapes stay as typed
        ("no escapes", "no escapes"),
    ],
)
def test_unescape(typed: str, meant: str) -> None:
    assert _unescape(typed) == meant


def test_escaped_infill_prompt_reaches_the_capability_check(tmp_path) -> None:  # noqa: ANN001
    # A Python variant cannot infill: refused before any weights are looked for, escapes or not.
    for flag in ("--escape", "--no-escape"):
        result = CliRunner().invoke(
            cli, ["run", "codellama-7b-python", "--infill", "--prefix", r"def f():\n    ", flag]
        )
        assert result.exit_code != 0
        assert "infill" in result.output
