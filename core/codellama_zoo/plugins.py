"""The plugin manager: built-in plugins first, then entry points.

Built-ins are this distribution's own ``zoo_*`` plugin modules, registered in
the order below. Third-party plugins come from the ``codellama_zoo`` entry
point group, after the built-ins, so they can override a built-in. The
``ZOO_LOAD_PLUGINS`` environment variable, when set, is a comma-separated
allow-list of distribution names whose entry points load (empty: none).
A plugin that fails to import, or whose hooks are misspelled or mistyped, is
recorded in :attr:`PluginManager.failures` and skipped: ``zoo`` keeps working.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import os
import sys
import traceback
from types import ModuleType
from typing import Any

import attrs
import pluggy

from codellama_zoo import hookspecs

ENTRY_POINT_GROUP = "codellama_zoo"
ALLOW_LIST_ENV = "ZOO_LOAD_PLUGINS"
DISTRIBUTION = "codellama-zoo"

# Module paths of the built-in plugins, in registration order.
BUILTIN_PLUGINS: tuple[str, ...] = (
    # model families
    "zoo_codellama.plugin",
    "zoo_codellama.chat",
    "zoo_codelet.plugin",
    # runtimes and kernels
    "zoo_torch.plugin",
    "zoo_flash_attention.plugin",
    "zoo_mindspore.plugin",
    # text in, text out
    "zoo_sentencepiece.plugin",
    "zoo_sentencepiece.commands",
    "zoo_infill.plugin",
    "zoo_generators.plugin",
    # training, scale-out, evaluation
    "zoo_datasets.plugin",
    "zoo_parallel.plugin",
    "zoo_humaneval.plugin",
)


@attrs.frozen
class PluginFailure:
    """A plugin that could not be loaded, and why."""

    name: str
    error: str
    detail: str = ""


@attrs.frozen
class PluginInfo:
    """What ``zoo plugins`` shows about one loaded plugin."""

    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...]
    builtin: bool


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus failure records and plugin provenance."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self.distributions: dict[str, tuple[str, str]] = {}  # plugin name -> (dist, version)
        self.builtin_names: set[str] = set()

    def add_plugin(
        self, plugin: object, name: str, distribution: str = "", version: str = "", builtin: bool = False
    ) -> bool:
        """Register ``plugin``; record a failure instead of raising if it is invalid."""
        try:
            self.register(plugin, name=name)
            self._check_plugin(plugin, name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            if self.is_registered(plugin):
                self.unregister(plugin)
            self.failures.append(PluginFailure(name, f"{type(exc).__name__}: {exc}"))
            return False
        self.distributions[name] = (distribution, version)
        if builtin:
            self.builtin_names.add(name)
        return True

    def _check_plugin(self, plugin: object, name: str) -> None:
        """Reject hook implementations that match no hook spec (misspellings)."""
        known = [n for n in dir(hookspecs) if n.startswith("register_")]
        for hook_caller in self.get_hookcallers(plugin) or []:
            if hook_caller.spec is None:
                close = difflib.get_close_matches(hook_caller.name, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known hooks: {', '.join(known)}"
                raise pluggy.PluginValidationError(
                    plugin, f"plugin {name!r} implements unknown hook {hook_caller.name!r}{hint}"
                )

    def plugin_infos(self) -> list[PluginInfo]:
        infos = []
        for name, plugin in self.list_name_plugin():
            if plugin is None:
                continue
            hooks = tuple(sorted(h.name for h in self.get_hookcallers(plugin) or []))
            dist, version = self.distributions.get(name, ("", ""))
            infos.append(PluginInfo(name, dist, version, hooks, name in self.builtin_names))
        return infos


def _allow_list() -> set[str] | None:
    raw = os.environ.get(ALLOW_LIST_ENV)
    if raw is None:
        return None
    return {part.strip().lower().replace("_", "-") for part in raw.split(",") if part.strip()}


def _version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _import_failure(name: str, exc: BaseException) -> PluginFailure:
    detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return PluginFailure(name, f"{type(exc).__name__}: {exc}", detail)


def load_builtins(pm: PluginManager, modules: tuple[str, ...] = BUILTIN_PLUGINS) -> None:
    version = _version()
    for module_name in modules:
        try:
            module: ModuleType = importlib.import_module(module_name)
        except Exception as exc:  # a broken built-in must not take `zoo` down
            pm.failures.append(_import_failure(module_name, exc))
            continue
        pm.add_plugin(module, module_name, DISTRIBUTION, version, builtin=True)


def load_entry_points(pm: PluginManager) -> None:
    allowed = _allow_list()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else ""
        version = ep.dist.version if ep.dist is not None else ""
        if allowed is not None and dist.lower().replace("_", "-") not in allowed:
            continue
        if pm.has_plugin(ep.name):
            continue
        try:
            plugin: Any = ep.load()
        except Exception as exc:
            pm.failures.append(_import_failure(ep.name, exc))
            continue
        pm.add_plugin(plugin, ep.name, dist, version)


def make_plugin_manager(builtins: tuple[str, ...] = BUILTIN_PLUGINS, entry_points: bool = True) -> PluginManager:
    """A fresh manager with built-ins then entry points loaded (tests use this)."""
    pm = PluginManager()
    load_builtins(pm, builtins)
    if entry_points:
        load_entry_points(pm)
    return pm


_current: PluginManager | None = None


def get_plugin_manager() -> PluginManager:
    """The process-wide manager, created on first use."""
    global _current
    if _current is None:
        _current = make_plugin_manager()
        for failure in _current.failures:
            print(f"zoo: warning: plugin {failure.name!r} skipped: {failure.error}", file=sys.stderr)
    return _current


def set_plugin_manager(pm: PluginManager | None) -> None:
    """Replace (or with ``None`` reset) the process-wide manager and its registry."""
    global _current
    _current = pm
    from codellama_zoo import registry

    registry.reset()
