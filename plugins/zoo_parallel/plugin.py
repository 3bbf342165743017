"""Registers the torch parallel strategies and the distributed command-line options.

``zoo train`` and ``zoo run`` (defined by other plugins / the core) gain
``--nproc/--nnodes/--node-rank/--master-addr/--master-port`` here, through
``register_commands``: with more than one process the command is relaunched
under ``torch.distributed.run``, one copy per rank. ``zoo convert`` gains
``--merge`` and ``--split mp=N`` for sharded checkpoints. ``zoo parallel`` adds
``plan`` (check a layout), ``merge`` and ``split`` (sharded checkpoints).
Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from codellama_zoo import hookimpl
from codellama_zoo.hookspecs import Register
from codellama_zoo.specs import CheckpointFormatSpec, ParallelStrategySpec

DESCRIPTIONS = {
    "auto": "parallel_config as written: data x model(tensor/sequence) x pipeline parallel on one DeviceMesh",
    "ddp": "data parallel over every rank (DistributedDataParallel)",
    "fsdp": "fully sharded data parallel over every rank (FSDP2 fully_shard)",
    "tensor": "tensor parallel over every rank (DTensor column/row sharding)",
    "sequence": "tensor parallel with sequence parallel norms and residual stream",
    "pipeline": "pipeline parallel, one stage per rank (torch.distributed.pipelining, GPipe)",
}


@hookimpl
def register_parallel_strategies(register: Register) -> None:
    from zoo_parallel.strategies import make_apply, make_validate

    for name, description in DESCRIPTIONS.items():
        register(ParallelStrategySpec(
            name=name, backend="torch", description=description,
            validate=make_validate(name), apply=make_apply(name),
        ))


def _detect_dcp(path: object) -> bool:
    from pathlib import Path

    from zoo_parallel.checkpoint import detect

    return detect(Path(str(path)))


def _lazy(name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        from zoo_parallel import checkpoint

        return getattr(checkpoint, name)(*args, **kwargs)

    return call


@hookimpl
def register_checkpoint_formats(register: Register) -> None:
    register(CheckpointFormatSpec(
        name="dcp",
        description="sharded torch.distributed.checkpoint folder (read: merged; write: --shards N = mp=N shards)",
        priority=50,
        detect=_detect_dcp,
        load=_lazy("load"),
        save=_lazy("save"),
        read_config=_lazy("read_config"),
    ))


@hookimpl(trylast=True)  # after the plugins that define `zoo run`
def register_commands(cli: click.Group) -> None:
    from zoo_parallel.commands import add_convert_options, add_distributed_options, parallel_group

    cli.add_command(parallel_group)
    for name in ("train", "run"):
        command = cli.commands.get(name)
        if command is not None:
            add_distributed_options(command, name)
    convert = cli.commands.get("convert")
    if convert is not None:
        add_convert_options(convert)
