"""Typed lookups over everything the plugins registered.

Each kind of spec is collected lazily, the first time it is asked for, by
calling the matching ``register_*`` hook plugin by plugin so that every spec
remembers which plugin registered it. This module and :mod:`plugins` are the
only places that call hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import attrs

from codellama_zoo import hookspecs
from codellama_zoo.errors import DuplicateRegistrationError, PluginError, UnknownModelError, UnknownNameError
from codellama_zoo.plugins import PluginManager, get_plugin_manager
from codellama_zoo.specs import (
    SPEC_KINDS,
    AttentionSpec,
    BackendSpec,
    CheckpointFormatSpec,
    DatasetSpec,
    EvaluationSpec,
    GeneratorSpec,
    ModelSpec,
    ParallelStrategySpec,
    PromptFormatSpec,
    TokenizerSpec,
)

S = TypeVar("S")

# Kinds whose names are unique per backend rather than globally.
_PER_BACKEND = {"attention", "parallel_strategies"}

_SINGULAR = {
    "models": "model",
    "backends": "backend",
    "attention": "attention implementation",
    "tokenizers": "tokenizer",
    "prompt_formats": "prompt format",
    "generators": "generator",
    "datasets": "dataset",
    "parallel_strategies": "parallel strategy",
    "checkpoint_formats": "checkpoint format",
    "evaluations": "evaluation",
}


def spec_key(kind: str, spec: Any) -> str:
    return f"{spec.backend}/{spec.name}" if kind in _PER_BACKEND else spec.name


@attrs.frozen
class Entry(Generic[S]):
    spec: S
    plugin: str


class Collection(Generic[S]):
    """All specs of one kind, by key, in registration order."""

    def __init__(self, kind: str, entries: dict[str, Entry[S]]) -> None:
        self.kind = kind
        self.entries = entries

    def __iter__(self) -> Any:
        return (entry.spec for entry in self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def get(self, key: str) -> S:
        try:
            return self.entries[key].spec
        except KeyError:
            raise UnknownNameError(_SINGULAR[self.kind], key, self.entries) from None

    def plugin_of(self, key: str) -> str:
        return self.entries[key].plugin

    def names(self) -> list[str]:
        return list(self.entries)


def _collect(pm: PluginManager, kind: str, hook_name: str) -> dict[str, Entry[Any]]:
    expected = SPEC_KINDS[kind]
    entries: dict[str, Entry[Any]] = {}
    hook = getattr(pm.hook, hook_name)
    for impl in hook.get_hookimpls():  # registration order: built-ins first
        plugin_name = impl.plugin_name

        def register(spec: Any, *, replace: bool = False, _plugin: str = plugin_name) -> None:
            if not isinstance(spec, expected):
                raise PluginError(
                    f"plugin {_plugin!r} passed {type(spec).__name__} to {hook_name}; "
                    f"expected a {expected.__name__}"
                )
            key = spec_key(kind, spec)
            if key in entries and not replace:
                raise DuplicateRegistrationError(_SINGULAR[kind], key, entries[key].plugin, _plugin)
            entries[key] = Entry(spec, _plugin)

        impl.function(register=register)
    return entries


class Registry:
    """Lookups for one plugin manager; build with :func:`get_registry`."""

    def __init__(self, pm: PluginManager) -> None:
        self.pm = pm
        self._kinds: dict[str, Collection[Any]] = {}
        self._aliases: dict[str, str] | None = None

    def collection(self, kind: str) -> Collection[Any]:
        if kind not in self._kinds:
            hook_name = next(h for h, k in hookspecs.REGISTRATION_HOOKS.items() if k == kind)
            self._kinds[kind] = Collection(kind, _collect(self.pm, kind, hook_name))
        return self._kinds[kind]

    # -- models -------------------------------------------------------------
    @property
    def models(self) -> Collection[ModelSpec]:
        return self.collection("models")

    def _alias_table(self) -> dict[str, str]:
        if self._aliases is None:
            table: dict[str, str] = {}
            owner: dict[str, str] = {}
            for key, entry in self.models.entries.items():
                for name in (entry.spec.name, *entry.spec.aliases):
                    folded = name.lower()
                    if folded in table and table[folded] != key:
                        raise DuplicateRegistrationError(
                            "model name or alias", name, owner[folded], entry.plugin
                        )
                    table[folded] = key
                    owner[folded] = entry.plugin
            self._aliases = table
        return self._aliases

    def model(self, name_or_alias: str) -> ModelSpec:
        """The model registered under this name or alias (case-insensitive)."""
        key = self._alias_table().get(name_or_alias.lower())
        if key is None:
            raise UnknownModelError(name_or_alias, self._alias_table())
        return self.models.get(key)

    def model_plugin(self, name: str) -> str:
        return self.models.plugin_of(self.model(name).name)

    # -- the other kinds ----------------------------------------------------
    @property
    def backends(self) -> Collection[BackendSpec]:
        return self.collection("backends")

    @property
    def attention(self) -> Collection[AttentionSpec]:
        return self.collection("attention")

    @property
    def tokenizers(self) -> Collection[TokenizerSpec]:
        return self.collection("tokenizers")

    @property
    def prompt_formats(self) -> Collection[PromptFormatSpec]:
        return self.collection("prompt_formats")

    @property
    def generators(self) -> Collection[GeneratorSpec]:
        return self.collection("generators")

    @property
    def datasets(self) -> Collection[DatasetSpec]:
        return self.collection("datasets")

    @property
    def parallel_strategies(self) -> Collection[ParallelStrategySpec]:
        return self.collection("parallel_strategies")

    @property
    def checkpoint_formats(self) -> Collection[CheckpointFormatSpec]:
        return self.collection("checkpoint_formats")

    @property
    def evaluations(self) -> Collection[EvaluationSpec]:
        return self.collection("evaluations")

    def attention_for(self, backend: str, name: str) -> AttentionSpec:
        return self.attention.get(f"{backend}/{name}")

    def available(self, items: Collection[S], is_available: Callable[[S], bool]) -> list[S]:
        return [spec for spec in items if is_available(spec)]

    def add_commands(self, cli: Any) -> None:
        """Let every plugin add its subcommands to the root click group."""
        self.pm.hook.register_commands(cli=cli)


_registry: Registry | None = None


def get_registry() -> Registry:
    """The registry over the process-wide plugin manager."""
    global _registry
    pm = get_plugin_manager()
    if _registry is None or _registry.pm is not pm:
        _registry = Registry(pm)
    return _registry


def reset() -> None:
    global _registry
    _registry = None
