"""`zoo mindspore bench`: the compiled MindSpore decode next to the PyTorch backend, same weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from mindspore_testing import tiny  # noqa: F401  (sets GLOG_v before MindSpore is imported)

pytest.importorskip("mindspore")
pytest.importorskip("torch")

from codellama_zoo.cli import cli  # noqa: E402
from zoo_mindspore.cpu_kernels import find_compiler  # noqa: E402

pytestmark = pytest.mark.mindspore


def test_bench_reports_both_backends_and_the_ratio(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        cli, ["mindspore", "bench", "--config", "micro", "--repeats", "1", "--new-tokens", "6", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "ratio mindspore / torch: decode" in result.output
    (entry,) = json.loads(out.read_text())
    torch_row, ms_row, *ops_only = entry["rows"]
    assert torch_row["model"].startswith("zoo_torch") and ms_row["model"].startswith("zoo_mindspore (jit")
    assert ms_row["decode_tok_s"] > 0 and entry["decode_ratio"] == pytest.approx(
        ms_row["decode_tok_s"] / torch_row["decode_tok_s"]
    )
    assert entry["same_tokens"], "same weights and prompt must give the same greedy tokens"
    if find_compiler() is not None:  # the kernel decode, and MindSpore's operators alone beside it
        assert "cpu kernels" in ms_row["model"] and "without the CPU decode kernels" in result.output
        (ops_row,) = ops_only
        assert ops_row["model"].endswith("ops only)") and ops_row["tokens"] == torch_row["tokens"]
        assert entry["ops_only_decode_ratio"] == pytest.approx(ops_row["decode_tok_s"] / torch_row["decode_tok_s"])


def test_zoo_help_imports_neither_runtime() -> None:
    code = (
        "import sys\nfrom codellama_zoo.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "assert 'mindspore' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, "mindspore", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "merge" in proc.stdout and "split" in proc.stdout and "bench" in proc.stdout
