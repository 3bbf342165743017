"""The plugin without MindSpore: it loads, registers, and reports the backend unavailable (runs everywhere)."""

from __future__ import annotations

import subprocess
import sys

BLOCKED = "import sys\nsys.modules['mindspore'] = None  # as if MindSpore were not installed\n"


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCKED + code], capture_output=True, text=True, timeout=120)


def test_plugin_registers_and_reports_unavailable_without_mindspore() -> None:
    proc = run(
        "from codellama_zoo.plugins import get_plugin_manager\n"
        "from codellama_zoo.registry import get_registry\n"
        "assert not get_plugin_manager().failures, get_plugin_manager().failures\n"
        "r = get_registry()\n"
        "b = r.backends.get('mindspore')\n"
        "assert not b.is_available() and 'MindSpore is not installed' in b.unavailable_reason()\n"
        "assert b.devices() == ()\n"
        "assert not r.attention_for('mindspore', 'flash').is_available('ascend')\n"
        "assert not r.attention_for('mindspore', 'math').is_available('cpu')\n"
        "assert {'mindspore', 'mindspore-safetensors'} <= set(r.checkpoint_formats.names())\n"
        "assert {'mindspore/data', 'mindspore/semi-auto'} <= set(r.parallel_strategies.names())\n"
        "from codellama_zoo.errors import BackendUnavailableError\n"
        "from zoo_mindspore.backend import load_model\n"
        "from zoo_codellama.presets import ARCHITECTURES\n"
        "try:\n"
        "    load_model(ARCHITECTURES['7b'], None)\n"
        "except BackendUnavailableError as exc:\n"
        "    assert 'codellama-zoo[mindspore]' in str(exc)\n"
        "else:\n"
        "    raise AssertionError('loading without MindSpore must fail clearly')\n"
    )
    assert proc.returncode == 0, proc.stderr


def test_zoo_commands_without_mindspore_fail_in_one_line() -> None:
    proc = run(
        "from codellama_zoo.cli import main\n"
        "sys.argv = ['zoo', 'mindspore', 'merge', '.', '/tmp/zoo-no-ms-merge']\n"
        "main()\n"
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().startswith("zoo: error:") and "MindSpore is not installed" in proc.stderr
    assert "Traceback" not in proc.stderr
