"""Registers the torch backend, its eager attention, its checkpoint formats and commands.

Nothing here imports torch: every callable imports it when called, so a machine
without torch still runs ``zoo`` and sees the backend as unavailable.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import click

from codellama_zoo import hookimpl
from codellama_zoo.hookspecs import Register
from codellama_zoo.specs import AttentionSpec, BackendSpec


def _torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def _unavailable_reason() -> str:
    return "" if _torch_available() else "torch is not installed (pip install 'codellama-zoo[torch]')"


def _devices() -> tuple[str, ...]:
    if not _torch_available():
        return ()
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return tuple(devices)


def _load_model(*args: Any, **kwargs: Any) -> Any:
    from zoo_torch.runtime import load_model

    return load_model(*args, **kwargs)


def _train(*args: Any, **kwargs: Any) -> Any:
    from zoo_torch.trainer import train  # type: ignore[import-not-found,unused-ignore]  # the training issue's module

    return train(*args, **kwargs)


def _has_trainer() -> bool:
    return importlib.util.find_spec("zoo_torch.trainer") is not None


@hookimpl
def register_backends(register: Register) -> None:
    register(
        BackendSpec(
            name="torch",
            description="PyTorch: Llama model with static KV cache, pluggable attention, torch.compile optional",
            priority=100,
            is_available=_torch_available,
            devices=_devices,
            dtypes=("fp32", "bf16", "fp16"),
            load_model=_load_model,
            train=_train if _has_trainer() else None,
            unavailable_reason=_unavailable_reason,
        )
    )


def _eager() -> Any:
    from zoo_torch.model import eager_attention

    return eager_attention


@hookimpl
def register_attention(register: Register) -> None:
    register(
        AttentionSpec(
            name="eager",
            backend="torch",
            description="reference: matmul + fp32 softmax in plain torch (any device, any dtype)",
            priority=0,
            is_available=lambda device: _torch_available(),
            factory=_eager,
            unavailable_reason=lambda device: _unavailable_reason(),
        )
    )


@hookimpl
def register_checkpoint_formats(register: Register) -> None:
    # zoo_torch.checkpoints imports torch only inside its functions; detect() looks at file names.
    from zoo_torch.checkpoints import FORMATS

    for spec in FORMATS:
        register(spec)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from zoo_torch.commands import attention_command, bench_command, convert_command

    for command in (convert_command, bench_command, attention_command):
        if command.name not in cli.commands:
            cli.add_command(command)
