"""docs/hooks.md lists exactly the hook specs, with their exact signatures."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from codellama_zoo import hookspecs
from codellama_zoo.plugins import PluginManager

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _spec_signatures() -> dict[str, str]:
    pm = PluginManager()
    names = [name for name in dir(pm.hook) if name.startswith("register_")]
    result = {}
    for name in names:
        sig = inspect.signature(getattr(hookspecs, name))
        params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
        result[name] = f"{name}({params}) -> {sig.return_annotation}"
    return result


def _documented_signatures() -> dict[str, str]:
    text = (DOCS / "hooks.md").read_text()
    found = re.findall(r"^### `((register_\w+)\(.*\) -> .*)`$", text, flags=re.M)
    return {name: signature for signature, name in found}


def test_hooks_page_matches_hookspecs() -> None:
    assert _documented_signatures() == _spec_signatures()


def test_every_registration_hook_has_a_spec_kind() -> None:
    documented = set(_documented_signatures()) - {"register_commands"}
    assert documented == set(hookspecs.REGISTRATION_HOOKS)


def test_plugin_guide_shows_the_example() -> None:
    guide = (DOCS / "plugins.md").read_text()
    assert "examples/zoo-hello" in guide
    assert "[project.entry-points.codellama_zoo]" in guide
    assert "ZOO_LOAD_PLUGINS" in guide
