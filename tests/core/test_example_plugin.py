"""examples/zoo-hello installed for real (pip) and discovered through its entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "zoo-hello"


@pytest.fixture(scope="module")
def hello_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory holding the example plugin installed by pip (with its dist-info)."""
    target = tmp_path_factory.mktemp("hello-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(EXAMPLE)],
        check=True, capture_output=True, text=True,
    )
    assert list(target.glob("zoo_hello-*.dist-info")), "pip did not install the example's metadata"
    yield target


def zoo(site: Path, *args: str, allow: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    env.pop("ZOO_LOAD_PLUGINS", None)
    if allow is not None:
        env["ZOO_LOAD_PLUGINS"] = allow
    return subprocess.run(
        [sys.executable, "-c", "from codellama_zoo.cli import main; main()", *args],
        capture_output=True, text=True, env=env,
    )


def test_entry_point_adds_models_and_command(hello_site: Path) -> None:
    models = zoo(hello_site, "models", "--json")
    assert models.returncode == 0, models.stderr
    names = {row["name"] for row in json.loads(models.stdout)}
    assert "hello-llama-tiny" in names
    assert "codellama-7b" in names
    helped = zoo(hello_site, "--help")
    assert "hello" in helped.stdout.split("Commands:")[1]
    said = zoo(hello_site, "hello", "zoo")
    assert said.stdout.strip() == "Hello, zoo, from a codellama-zoo plugin!"


def test_plugins_lists_distribution_and_hooks(hello_site: Path) -> None:
    data = json.loads(zoo(hello_site, "plugins", "--json").stdout)
    hello = next(p for p in data["plugins"] if p["name"] == "hello")
    assert hello["distribution"] == "zoo-hello"
    assert hello["version"] == "0.1.0"
    assert hello["hooks"] == ["register_commands", "register_models"]
    assert not hello["builtin"]


def test_info_names_the_registering_plugin(hello_site: Path) -> None:
    info = json.loads(zoo(hello_site, "info", "hello:tiny", "--json").stdout)
    assert info["plugin"] == "hello"
    assert info["config"]["kv_heads"] == 2


@pytest.mark.parametrize("allow", ["", "some-other-dist"])
def test_allow_list_excludes_it(hello_site: Path, allow: str) -> None:
    names = {row["name"] for row in json.loads(zoo(hello_site, "models", "--json", allow=allow).stdout)}
    assert "hello-llama-tiny" not in names
    assert "codellama-7b" in names  # built-ins always load
    assert "hello" not in zoo(hello_site, "--help", allow=allow).stdout.split("Commands:")[1]


def test_allow_list_can_name_it(hello_site: Path) -> None:
    names = {row["name"] for row in json.loads(zoo(hello_site, "models", "--json", allow="zoo-hello").stdout)}
    assert "hello-llama-tiny" in names
