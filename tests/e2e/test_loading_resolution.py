"""Backend / device / dtype / attention resolution and weights lookup, with stand-in specs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from codellama_zoo import hookimpl, plugins
from codellama_zoo.errors import BackendUnavailableError, UnknownNameError, UsageError, WeightsError
from codellama_zoo.loading import default_weights_dir, locate_weights, place, zoo_home
from codellama_zoo.registry import get_registry
from codellama_zoo.specs import AttentionSpec, BackendSpec


class Runtimes:
    """Two fake backends: a preferred one that is missing, and a usable one with a GPU."""

    @hookimpl
    def register_backends(self, register: Any) -> None:
        register(BackendSpec(name="fast", priority=200, is_available=lambda: False, load_model=print,
                             unavailable_reason=lambda: "fastlib is not installed"))  # fmt: skip
        register(BackendSpec(name="slow", priority=10, devices=lambda: ("cpu", "gpu:0"), dtypes=("fp32", "bf16"),
                             load_model=print))  # fmt: skip

    @hookimpl
    def register_attention(self, register: Any) -> None:
        register(AttentionSpec(name="eager", backend="slow", priority=0))
        register(AttentionSpec(name="fused", backend="slow", priority=10, is_available=lambda d: d != "cpu",
                               unavailable_reason=lambda d: f"needs a GPU, not {d}"))  # fmt: skip


@pytest.fixture
def fake_runtimes() -> None:
    pm = plugins.make_plugin_manager(builtins=("zoo_codellama.plugin",), entry_points=False)
    pm.add_plugin(Runtimes(), "runtimes")
    plugins.set_plugin_manager(pm)


@pytest.mark.usefixtures("fake_runtimes")
def test_auto_picks_the_best_available() -> None:
    where = place()
    assert (where.backend.name, where.device, where.dtype, where.attention) == ("slow", "gpu:0", "bf16", "fused")
    cpu = place(device="cpu")
    assert (cpu.dtype, cpu.attention) == ("fp32", "eager")


@pytest.mark.usefixtures("fake_runtimes")
def test_explicit_choices_are_checked() -> None:
    assert place("slow", "gpu:0", "fp32", "eager").attention == "eager"
    with pytest.raises(BackendUnavailableError, match="fastlib is not installed"):
        place("fast")
    with pytest.raises(UnknownNameError, match="unknown backend 'tensorflow'"):
        place("tensorflow")
    with pytest.raises(BackendUnavailableError, match="device 'npu' is not available.*cpu, gpu:0"):
        place("slow", "npu")
    with pytest.raises(UsageError, match="dtype 'fp16' is not supported.*fp32, bf16"):
        place("slow", "cpu", "fp16")
    with pytest.raises(BackendUnavailableError, match="needs a GPU, not cpu"):
        place("slow", "cpu", "fp32", "fused")


def test_weights_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZOO_HOME", raising=False)
    assert zoo_home() == Path("~/.cache/codellama-zoo").expanduser()
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    spec = get_registry().model("codellama:7b")
    assert default_weights_dir(spec) == tmp_path / "codellama-7b"
    with pytest.raises(WeightsError, match=f"looked in {tmp_path / 'codellama-7b'}"):
        locate_weights(spec, None)
    (tmp_path / "codellama-7b").mkdir()
    (tmp_path / "codellama-7b" / "config.json").write_text("{}")
    assert locate_weights(spec, None) == tmp_path / "codellama-7b"
    with pytest.raises(WeightsError, match="does not exist"):
        locate_weights(spec, tmp_path / "nowhere")
    with pytest.raises(UsageError, match="name a model"):
        locate_weights(None, None)
