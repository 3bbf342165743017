"""The plugin manager: validation, failures, duplicates, the allow-list."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import attrs
import pytest

from codellama_zoo import DuplicateRegistrationError, ModelSpec, hookimpl, plugins
from codellama_zoo.registry import Registry
from zoo_codellama.presets import ARCHITECTURES


def _module(name: str, **functions: object) -> types.ModuleType:
    module = types.ModuleType(name)
    for key, value in functions.items():
        setattr(module, key, value)
    return module


def _spec(name: str, aliases: tuple[str, ...] = ()) -> ModelSpec:
    return ModelSpec(name=name, family="test", size="tiny", variant="base", config=ARCHITECTURES["7b"], aliases=aliases)


def test_builtins_load_without_failures() -> None:
    pm = plugins.make_plugin_manager(entry_points=False)
    assert pm.failures == []
    assert "zoo_codellama.plugin" in pm.builtin_names
    pm.check_pending()


def test_misspelled_hook_is_reported_and_plugin_skipped() -> None:
    @hookimpl
    def register_model(register):  # noqa: ANN001 - the typo is the point
        register(_spec("never"))

    pm = plugins.make_plugin_manager(entry_points=False)
    assert not pm.add_plugin(_module("typo_plugin", register_model=register_model), "typo_plugin")
    (failure,) = pm.failures
    assert failure.name == "typo_plugin"
    assert "unknown hook 'register_model'" in failure.error
    assert "did you mean 'register_models'" in failure.error
    assert not pm.has_plugin("typo_plugin")
    pm.check_pending()


def test_hook_with_wrong_argument_name_is_reported() -> None:
    @hookimpl
    def register_models(callback):  # noqa: ANN001
        pass

    pm = plugins.make_plugin_manager(entry_points=False)
    assert not pm.add_plugin(_module("bad_args", register_models=register_models), "bad_args")
    assert "callback" in pm.failures[0].error


def test_plugin_raising_on_import_is_reported_and_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "exploding_plugin.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    pm = plugins.make_plugin_manager(builtins=(*plugins.BUILTIN_PLUGINS, "exploding_plugin"), entry_points=False)
    (failure,) = pm.failures
    assert failure.name == "exploding_plugin"
    assert "RuntimeError: boom at import" in failure.error
    # everything else still works
    assert Registry(pm).model("codellama-7b").name == "codellama-7b"
    sys.modules.pop("exploding_plugin", None)


def test_duplicate_model_name_names_both_plugins() -> None:
    @hookimpl
    def register_models(register):  # noqa: ANN001
        register(_spec("codellama-7b"))

    pm = plugins.make_plugin_manager(entry_points=False)
    pm.add_plugin(_module("copycat", register_models=register_models), "copycat")
    with pytest.raises(DuplicateRegistrationError) as info:
        Registry(pm).models  # noqa: B018 - collecting raises
    assert "zoo_codellama.plugin" in str(info.value)
    assert "copycat" in str(info.value)


def test_duplicate_alias_across_models_names_both_plugins() -> None:
    @hookimpl
    def register_models(register):  # noqa: ANN001
        register(_spec("my-model", aliases=("codellama:7b",)))

    pm = plugins.make_plugin_manager(entry_points=False)
    pm.add_plugin(_module("alias_thief", register_models=register_models), "alias_thief")
    with pytest.raises(DuplicateRegistrationError, match="alias_thief"):
        Registry(pm).model("my-model")


def test_replace_overrides_on_purpose() -> None:
    @hookimpl
    def register_models(register):  # noqa: ANN001
        register(attrs.evolve(_spec("codellama-7b"), description="patched"), replace=True)

    pm = plugins.make_plugin_manager(entry_points=False)
    pm.add_plugin(_module("patcher", register_models=register_models), "patcher")
    registry = Registry(pm)
    assert registry.model("codellama-7b").description == "patched"
    assert registry.model_plugin("codellama-7b") == "patcher"


def test_wrong_spec_type_is_a_plugin_error() -> None:
    from codellama_zoo import PluginError

    @hookimpl
    def register_models(register):  # noqa: ANN001
        register({"name": "dict-model"})

    pm = plugins.make_plugin_manager(entry_points=False)
    pm.add_plugin(_module("sloppy", register_models=register_models), "sloppy")
    with pytest.raises(PluginError, match="sloppy.*expected a ModelSpec"):
        Registry(pm).models  # noqa: B018


def test_allow_list_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(plugins.ALLOW_LIST_ENV, "zoo_hello, other-dist")
    assert plugins._allow_list() == {"zoo-hello", "other-dist"}
    monkeypatch.setenv(plugins.ALLOW_LIST_ENV, "")
    assert plugins._allow_list() == set()
    monkeypatch.delenv(plugins.ALLOW_LIST_ENV)
    assert plugins._allow_list() is None


def test_plugin_infos_list_hooks() -> None:
    pm = plugins.make_plugin_manager(entry_points=False)
    info = next(i for i in pm.plugin_infos() if i.name == "zoo_codellama.plugin")
    assert "register_models" in info.hooks
    assert info.builtin
