"""Every hook a codellama-zoo plugin can implement.

Registration hooks receive a ``register`` callback and call it once per thing
they provide, passing a frozen spec from :mod:`codellama_zoo.specs`. The
callback accepts ``replace=True`` to override, on purpose, a spec of the same
name that an earlier plugin registered; without it a duplicate name is an
error naming both plugins. Hooks are called lazily, the first time the
registry is asked about that kind of thing, with every plugin loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import pluggy

if TYPE_CHECKING:
    import click


PROJECT = "codellama_zoo"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class Register(Protocol):
    """The callback a ``register_*`` hook receives."""

    def __call__(self, spec: object, *, replace: bool = False) -> None: ...


@hookspec
def register_models(register: Register) -> None:
    """Register model variants.

    Called once per plugin manager, the first time models are looked up.
    Receives ``register``; call ``register(ModelSpec(...))`` for each variant.
    Names and aliases must be unique across all plugins. Returns nothing.
    """


@hookspec
def register_backends(register: Register) -> None:
    """Register runtimes that build and run models.

    Called the first time a backend is resolved (``--backend``, ``auto``).
    Call ``register(BackendSpec(...))``; its callables must import the runtime
    lazily so that a missing runtime only makes the backend unavailable.
    Returns nothing.
    """


@hookspec
def register_attention(register: Register) -> None:
    """Register attention kernels.

    Called the first time an attention implementation is resolved. Call
    ``register(AttentionSpec(...))``; names are unique per backend, and
    ``is_available(device)`` decides whether ``attention: auto`` may pick it.
    Returns nothing.
    """


@hookspec
def register_tokenizers(register: Register) -> None:
    """Register tokenizer implementations.

    Called the first time a tokenizer is looked up by name (a ``ModelSpec``
    names its tokenizer). Call ``register(TokenizerSpec(...))``. Returns nothing.
    """


@hookspec
def register_prompt_formats(register: Register) -> None:
    """Register prompt formats (completion, chat templates, infill layouts).

    Called the first time a prompt format is looked up. Call
    ``register(PromptFormatSpec(...))``. Returns nothing.
    """


@hookspec
def register_generators(register: Register) -> None:
    """Register decoding strategies.

    Called the first time a generator is looked up. Call
    ``register(GeneratorSpec(...))``. Returns nothing.
    """


@hookspec
def register_datasets(register: Register) -> None:
    """Register dataset readers and preprocessors.

    Called the first time a dataset is looked up (``zoo data``, ``zoo train``).
    Call ``register(DatasetSpec(...))``. Returns nothing.
    """


@hookspec
def register_parallel_strategies(register: Register) -> None:
    """Register parallel strategies that transform a built model.

    Called the first time a strategy is resolved from a ``parallel_config``.
    Call ``register(ParallelStrategySpec(...))``; names are unique per
    backend. Returns nothing.
    """


@hookspec
def register_checkpoint_formats(register: Register) -> None:
    """Register on-disk weight layouts.

    Called the first time a weights directory is detected or converted. Call
    ``register(CheckpointFormatSpec(...))``; ``detect(path)`` must be cheap
    (look at file names, not tensors). Returns nothing.
    """


@hookspec
def register_evaluations(register: Register) -> None:
    """Register benchmarks for ``zoo eval``.

    Called the first time an evaluation is looked up. Call
    ``register(EvaluationSpec(...))``. Returns nothing.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``zoo`` command line.

    Called once when the ``zoo`` command starts (before ``--help`` is shown).
    Receives the root click group; add commands with ``@cli.command()``.
    Keep imports of heavy packages inside the command functions so that
    ``zoo --help`` stays fast. Returns nothing.
    """


# Hook name -> spec kind, for the registration hooks.
REGISTRATION_HOOKS: dict[str, str] = {
    "register_models": "models",
    "register_backends": "backends",
    "register_attention": "attention",
    "register_tokenizers": "tokenizers",
    "register_prompt_formats": "prompt_formats",
    "register_generators": "generators",
    "register_datasets": "datasets",
    "register_parallel_strategies": "parallel_strategies",
    "register_checkpoint_formats": "checkpoint_formats",
    "register_evaluations": "evaluations",
}
