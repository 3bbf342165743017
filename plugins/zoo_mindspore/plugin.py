"""The MindSpore runtime plugin: backend, math attention, checkpoint formats, parallel strategies, CLI.

Imports nothing heavy: MindSpore is imported inside the callables, so the
plugin loads (and reports the backend unavailable) where MindSpore is absent.
"""

from __future__ import annotations

from typing import Any

from codellama_zoo import hookimpl
from codellama_zoo.specs import AttentionSpec, BackendSpec, CheckpointFormatSpec, ParallelStrategySpec


def _load_model(*args: Any, **kwargs: Any) -> Any:
    from zoo_mindspore.backend import load_model

    return load_model(*args, **kwargs)


def _train(*args: Any, **kwargs: Any) -> Any:
    from zoo_mindspore.training import train

    return train(*args, **kwargs)


def _available() -> bool:
    from zoo_mindspore.backend import is_available

    return is_available()


def _reason() -> str:
    from zoo_mindspore.backend import unavailable_reason

    return unavailable_reason()


def _devices() -> tuple[str, ...]:
    from zoo_mindspore.backend import devices

    return devices()


@hookimpl
def register_backends(register: Any) -> None:
    register(
        BackendSpec(
            name="mindspore",
            description="MindSpore: the Llama Cell compiled with mindspore.jit (CPU, Ascend); msrun data parallel",
            priority=10,  # `backend: auto` prefers torch (priority above this) when both are present
            is_available=_available,
            devices=_devices,
            dtypes=("fp32", "fp16", "bf16"),
            load_model=_load_model,
            train=_train,
            unavailable_reason=_reason,
        )
    )


def _math_kernel() -> Any:
    from zoo_mindspore.model import math_attention

    return math_attention


@hookimpl
def register_attention(register: Any) -> None:
    register(
        AttentionSpec(
            name="math",
            backend="mindspore",
            description="matmul + fp32 softmax, grouped-query without K/V copies; every device",
            priority=0,
            is_available=lambda device: _available(),
            factory=_math_kernel,
            unavailable_reason=lambda device: _reason(),
        )
    )


def _ckpt(name: str) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        from zoo_mindspore import checkpoints

        return getattr(checkpoints, name)(*args, **kwargs)

    return call


@hookimpl
def register_checkpoint_formats(register: Any) -> None:
    register(
        CheckpointFormatSpec(
            name="mindspore",
            description="MindSpore .ckpt with the seed converter's names (model.tok_embeddings.embedding_weight, ...)",
            priority=30,
            detect=_ckpt("detect_ckpt"),
            load=_ckpt("load_ckpt"),
            save=_ckpt("save_ckpt"),
            read_config=_ckpt("read_config"),
        )
    )
    register(
        CheckpointFormatSpec(
            name="mindspore-safetensors",
            description="MindSpore safetensors (format: ms) with the seed converter's names",
            priority=35,  # before Hugging Face's (30): both write model.safetensors; the header tells them apart
            detect=_ckpt("detect_safetensors"),
            load=_ckpt("load_safetensors"),
            save=_ckpt("save_safetensors"),
            read_config=_ckpt("read_config"),
        )
    )


def _parallel(name: str) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        from zoo_mindspore import parallel

        return getattr(parallel, name)(*args, **kwargs)

    return call


@hookimpl
def register_parallel_strategies(register: Any) -> None:
    register(
        ParallelStrategySpec(
            name="data",
            backend="mindspore",
            description="data parallel through msrun (CPU: mccl; Ascend: hccl), gradients averaged",
            validate=_parallel("validate"),
            apply=_parallel("apply"),
        )
    )
    register(
        ParallelStrategySpec(
            name="semi-auto",
            backend="mindspore",
            description="tensor (model) and pipeline parallel with MindSpore's semi-auto parallel; Ascend/GPU only",
            validate=_parallel("validate"),
            apply=_parallel("apply"),
        )
    )


@hookimpl
def register_commands(cli: Any) -> None:
    from zoo_mindspore.cli import mindspore_group

    cli.add_command(mindspore_group)
