"""``zoo run`` / ``zoo download`` end to end on tiny random checkpoints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import codellama_zoo
from codellama_zoo.cli import cli

pytestmark = pytest.mark.usefixtures("tiny_zoo")


def zoo(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def test_completion(infill_checkpoint: Path) -> None:
    result = zoo("run", "tiny-codellama-7b", "def fib(n):", "--weights", str(infill_checkpoint), "--max-new-tokens", "12")
    assert result.exit_code == 0, result.output
    model = codellama_zoo.load("tiny-codellama-7b", weights=infill_checkpoint)
    assert result.output == model.complete("def fib(n):", max_new_tokens=12) + "\n"


def test_completion_from_stdin_and_file(infill_checkpoint: Path, tmp_path: Path) -> None:
    prompt = "import sys\n\ndef main():\n"
    piped = zoo("run", "--weights", str(infill_checkpoint), "-", "--max-new-tokens", "6", input=prompt)
    (tmp_path / "p.py").write_text(prompt)
    from_file = zoo("run", "--weights", str(infill_checkpoint), "--file", str(tmp_path / "p.py"), "--max-new-tokens", "6")
    assert piped.exit_code == 0 and from_file.exit_code == 0, piped.output + from_file.output
    assert piped.output == from_file.output
    model = codellama_zoo.load(weights=infill_checkpoint)
    assert piped.output == model.complete(prompt, max_new_tokens=6) + "\n"


def test_sampling_options_and_seed(infill_checkpoint: Path) -> None:
    args = ("run", "--weights", str(infill_checkpoint), "x = ", "--max-new-tokens", "8", "--temperature", "0.9",
            "--top-p", "0.9", "--top-k", "40", "--min-p", "0.01", "--repetition-penalty", "1.2", "--seed", "5")  # fmt: skip
    first, second = zoo(*args), zoo(*args)
    assert first.exit_code == 0, first.output
    assert first.output == second.output


def test_infill_with_marker_and_with_prefix_suffix(infill_checkpoint: Path) -> None:
    weights = ("--weights", str(infill_checkpoint), "--max-new-tokens", "8")
    marked = zoo("run", "tiny-codellama-7b", "--infill", "def f(x):\n    <FILL_ME>\n    return y\n", *weights)
    split = zoo("run", "tiny-codellama-7b", "--prefix", "def f(x):\n    ", "--suffix", "\n    return y\n", *weights)
    assert marked.exit_code == 0, marked.output
    assert marked.output == split.output
    model = codellama_zoo.load("tiny-codellama-7b", weights=infill_checkpoint)
    assert marked.output == model.infill("def f(x):\n    ", "\n    return y\n", max_new_tokens=8) + "\n"
    spm = zoo("run", "tiny-codellama-7b", "--spm", "--prefix", "a = ", "--suffix", "\n", *weights)
    assert spm.exit_code == 0
    assert spm.output == model.infill("a = ", "\n", suffix_first=True, max_new_tokens=8) + "\n"


def test_two_turn_chat_through_stdin(infill_checkpoint: Path) -> None:
    script = "Write hello world in C\nNow in Rust\n"
    args = ("run", "tiny-codellama-7b-instruct", "--weights", str(infill_checkpoint), "--max-new-tokens", "8")
    result = zoo(*args, "--system", "Be terse.", input=script)
    assert result.exit_code == 0, result.output
    model = codellama_zoo.load("tiny-codellama-7b-instruct", weights=infill_checkpoint)
    history = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Write hello world in C"}]
    first = model.chat(history, max_new_tokens=8)
    history += [{"role": "assistant", "content": first}, {"role": "user", "content": "Now in Rust"}]
    second = model.chat(history, max_new_tokens=8)
    assert result.output == f"{first}\n{second}\n"
    assert zoo(*args, input="").exit_code == 0  # Ctrl-D at once: clean exit
    assert zoo(*args, input="hi\n/exit\nnever sent\n").output.count("\n") == 1


def test_chat_70b_uses_step_format(chat70b_checkpoint: Path) -> None:
    result = zoo("run", "tiny-codellama-70b-instruct", "--weights", str(chat70b_checkpoint),
                 "--max-new-tokens", "6", "write a loop")  # fmt: skip
    assert result.exit_code == 0, result.output
    model = codellama_zoo.load("tiny-codellama-70b-instruct", weights=chat70b_checkpoint)
    assert model.chat_format == "codellama-70b-instruct"
    ids, stops = model.encode_chat([{"role": "user", "content": "write a loop"}])
    assert stops == [32015] and ids.count(32015) == 2  # <step> closes each turn and ends the reply
    assert result.output == model.chat([{"role": "user", "content": "write a loop"}], max_new_tokens=6) + "\n"


def test_output_is_streamed(infill_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Text reaches stdout while the model is still decoding, not at the end."""
    import codellama_zoo.loading as loading
    import zoo_generators.commands as commands

    decodes = {"n": 0}
    real_load = loading.load_language_model

    def counting_load(*a: Any, **k: Any) -> Any:
        lm = real_load(*a, **k)
        real_decode = lm.decode

        def decode(ids: Any) -> Any:
            decodes["n"] += 1
            return real_decode(ids)

        lm.decode = decode
        return lm

    writes: list[tuple[str, int]] = []
    real_echo = commands.click.echo
    monkeypatch.setattr(loading, "load_language_model", counting_load)
    monkeypatch.setattr(commands.click, "echo", lambda m="", **k: (writes.append((str(m), decodes["n"])), real_echo(m, **k)))
    result = zoo("run", "--weights", str(infill_checkpoint), "def f():", "--max-new-tokens", "10")
    assert result.exit_code == 0, result.output
    pieces = [(m, n) for m, n in writes if m]
    assert len(pieces) > 2 and pieces[0][1] < decodes["n"] == 9


def test_missing_weights_is_one_line() -> None:
    result = zoo("run", "tiny-codellama-7b", "def f():")
    assert result.exit_code != 0
    line = result.output.strip()
    assert "\n" not in line and "Traceback" not in line
    assert str(Path(os.environ["ZOO_HOME"]) / "tiny-codellama-7b") in line
    assert "zoo download tiny-codellama-7b" in line and "zoo convert" in line


def test_infill_unsupported_fails_before_weights() -> None:
    for name in ("tiny-codellama-7b-python", "tiny-codellama-34b", "codellama-70b-instruct"):
        result = zoo("run", name, "--infill", "a<FILL_ME>b")  # no weights anywhere: the capability check comes first
        assert result.exit_code == 2, result.output
        assert f"{name} cannot infill" in result.output and "looked in" not in result.output


def test_preset_checkpoint_mismatch(infill_checkpoint: Path) -> None:
    result = zoo("run", "codellama-7b", "x", "--weights", str(infill_checkpoint))
    assert result.exit_code != 0
    assert "is not codellama-7b" in result.output and "dim 4096 vs 64" in result.output


def test_usage_errors() -> None:
    assert "exactly one <FILL_ME>" in zoo("run", "tiny-codellama-7b", "--infill", "no marker").output


def test_download_uses_the_hub_client(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    calls: list[dict[str, Any]] = []

    def fake_snapshot_download(**kwargs: Any) -> str:
        calls.append(kwargs)
        Path(kwargs["local_dir"], "config.json").write_text("{}")
        return str(kwargs["local_dir"])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    result = zoo("download", "codellama:7b-instruct")
    assert result.exit_code == 0, result.output
    target = Path(os.environ["ZOO_HOME"]) / "codellama-7b-instruct"
    assert calls[0]["repo_id"] == "codellama/CodeLlama-7b-Instruct-hf"
    assert Path(calls[0]["local_dir"]) == target and "tokenizer.model" in calls[0]["allow_patterns"]
    assert f"downloaded codellama-7b-instruct to {target}" in result.output

    def failing(**kwargs: Any) -> str:
        raise OSError("401 Client Error: gated repo\nmore detail")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", failing)
    failed = zoo("download", "codellama-7b")
    assert failed.exit_code != 0 and "401 Client Error: gated repo" in failed.output
    assert failed.output.count("\n") == 1


def test_console_script_runs_a_bare_checkpoint(infill_checkpoint: Path, tmp_path: Path) -> None:
    """The installed `zoo` itself, with every built-in plugin, in a fresh process."""
    zoo_bin = Path(sys.executable).with_name("zoo")
    env = {**os.environ, "ZOO_HOME": str(tmp_path)}
    ok = subprocess.run([str(zoo_bin), "run", "--weights", str(infill_checkpoint), "def f():", "--max-new-tokens", "5"],
                        capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.endswith("\n") and len(ok.stdout) > 1
    missing = subprocess.run([str(zoo_bin), "run", "codellama-7b", "def f():"], capture_output=True, text=True,
                             env=env, timeout=300)  # fmt: skip
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert f"looked in {tmp_path / 'codellama-7b'}" in missing.stderr


def test_backend_device_dtype_attention_options(infill_checkpoint: Path) -> None:
    base = ("run", "--weights", str(infill_checkpoint), "def f():", "--max-new-tokens", "4")
    ok = zoo(*base, "--backend", "torch", "--device", "cpu", "--dtype", "bf16", "--attention", "eager")
    assert ok.exit_code == 0, ok.output
    bad = zoo(*base, "--backend", "tensorflow")
    assert bad.exit_code != 0 and "unknown backend 'tensorflow'" in bad.output
    bad_kernel = zoo(*base, "--attention", "warp-speed")
    assert bad_kernel.exit_code != 0 and "warp-speed" in bad_kernel.output


def test_instruct_model_as_plain_completion_and_reset(infill_checkpoint: Path) -> None:
    args = ("run", "tiny-codellama-7b-instruct", "--weights", str(infill_checkpoint), "--max-new-tokens", "5")
    plain = zoo(*args, "--no-chat", "def f():")
    model = codellama_zoo.load("tiny-codellama-7b-instruct", weights=infill_checkpoint)
    assert plain.output == model.complete("def f():", max_new_tokens=5) + "\n"
    reset = zoo(*args, input="first question\n/reset\nsecond question\n")
    first = model.chat([{"role": "user", "content": "first question"}], max_new_tokens=5)
    fresh = model.chat([{"role": "user", "content": "second question"}], max_new_tokens=5)  # no history after /reset
    assert reset.exit_code == 0 and reset.output == f"{first}\n{fresh}\n"


def test_bare_checkpoint_chat_on_request(chat70b_checkpoint: Path) -> None:
    """With --weights alone and --chat, the template follows the tokenizer (<step> -> 70B format)."""
    result = zoo("run", "--weights", str(chat70b_checkpoint), "--chat", "--max-new-tokens", "4", input="hello\n")
    assert result.exit_code == 0, result.output
    model = codellama_zoo.load(weights=chat70b_checkpoint)
    assert result.output == model.chat([{"role": "user", "content": "hello"}], max_new_tokens=4) + "\n"


@pytest.mark.slow
@pytest.mark.mindspore
def test_same_completion_on_mindspore(infill_checkpoint: Path) -> None:
    """The backend-neutral loop gives MindSpore's model the same greedy completion as torch's."""
    pytest.importorskip("mindspore")
    from tiny_zoo import BUILTINS

    from codellama_zoo import plugins

    pm = plugins.make_plugin_manager(builtins=(*BUILTINS, "zoo_mindspore.plugin"), entry_points=False)
    plugins.set_plugin_manager(pm)
    args = ("run", "--weights", str(infill_checkpoint), "def fib(n):", "--max-new-tokens", "8")
    on_torch = zoo(*args, "--backend", "torch")
    on_mindspore = zoo(*args, "--backend", "mindspore")
    assert on_mindspore.exit_code == 0, on_mindspore.output
    assert on_mindspore.output == on_torch.output


def test_echo_prints_prompt_and_infill_context(infill_checkpoint: Path) -> None:
    weights = ("--weights", str(infill_checkpoint), "--max-new-tokens", "6")
    model = codellama_zoo.load("tiny-codellama-7b", weights=infill_checkpoint)
    completion = zoo("run", "tiny-codellama-7b", "def f():", "--echo", *weights)
    assert completion.output == "def f():" + model.complete("def f():", max_new_tokens=6) + "\n"
    filled = zoo("run", "tiny-codellama-7b", "--prefix", "x = [", "--suffix", "]\n", "--echo", *weights)
    assert filled.output == "x = [" + model.infill("x = [", "]\n", max_new_tokens=6) + "]\n"


def test_bad_knob_fails_before_loading() -> None:
    result = zoo("run", "tiny-codellama-7b", "x", "--top-p", "0")  # no weights: the knob is checked first
    assert result.exit_code != 0 and "top_p must be in (0, 1]" in result.output
