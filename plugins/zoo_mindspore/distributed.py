"""Tensor-parallel checkpoints: split one checkpoint into per-rank shards and merge them back.

The job of the seed's ``transform_ckpt.py``, without a strategy file: every
Llama tensor has a fixed Megatron-style split rule (the layout MindSpore's
semi-auto parallel produces for ``model_parallel = mp``):

========================================  =====================================
tensor                                    rule
========================================  =====================================
``attention.wq/wk/wv``, ``feed_forward.w1/w3``  column parallel: split axis 0 (output rows, whole heads)
``attention.wo``, ``feed_forward.w2``     row parallel: split axis 1 (input columns)
``tok_embeddings``, ``output``            vocabulary parallel: split axis 0
``attention_norm``, ``ffn_norm``, ``norm``  replicated on every rank
========================================  =====================================

On disk a distributed checkpoint is ``DIR/rank_R/model.ckpt`` (or
``model.safetensors``) for R in 0..mp-1, with ``params.json`` and
``parallel.json`` (mp, format and the rule of every tensor) in ``DIR``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from codellama_zoo.errors import UsageError, WeightsError
from codellama_zoo.specs import LlamaConfig
from zoo_mindspore import checkpoints
from zoo_mindspore.checkpoints import Stored

STRATEGY_FILE = "parallel.json"
KINDS = ("ckpt", "safetensors")
REPLICATED = None

_RULES: tuple[tuple[re.Pattern[str], int | None], ...] = (
    (re.compile(r"layers\.\d+\.(attention\.w[qkv]|feed_forward\.w[13])\.weight"), 0),
    (re.compile(r"layers\.\d+\.(attention\.wo|feed_forward\.w2)\.weight"), 1),
    (re.compile(r"(tok_embeddings|output)\.weight"), 0),
    (re.compile(r"(layers\.\d+\.(attention_norm|ffn_norm)|norm)\.weight"), REPLICATED),
)


def split_axis(name: str) -> int | None:
    """The axis a canonical tensor is split along, or None when every rank holds all of it."""
    for pattern, axis in _RULES:
        if pattern.fullmatch(name):
            return axis
    raise WeightsError(f"no tensor-parallel split rule for tensor {name!r}; it is not a Llama parameter")


def check_model_parallel(config: LlamaConfig | None, state: Mapping[str, Stored], mp: int) -> None:
    """Every split must give whole heads and equal shards; say which size breaks it."""
    if mp < 1:
        raise UsageError(f"model_parallel must be a positive integer, got {mp}")
    if config is not None:
        for label, value in (("n_heads", config.n_heads), ("n_kv_heads", config.kv_heads)):
            if value % mp:
                raise UsageError(
                    f"model_parallel={mp} does not divide {label}={value}; choose a divisor of {value}"
                )
    for name, stored in state.items():
        axis = split_axis(name)
        if axis is not None and stored.array.shape[axis] % mp:
            raise UsageError(
                f"model_parallel={mp} does not divide axis {axis} of {name} (size {stored.array.shape[axis]})"
            )


def split_state(state: Mapping[str, Stored], mp: int, config: LlamaConfig | None = None) -> list[dict[str, Stored]]:
    check_model_parallel(config, state, mp)
    shards: list[dict[str, Stored]] = [{} for _ in range(mp)]
    for name, stored in state.items():
        axis = split_axis(name)
        pieces = [stored.array] * mp if axis is None else np.split(stored.array, mp, axis=axis)
        for rank, piece in enumerate(pieces):
            shards[rank][name] = Stored(np.ascontiguousarray(piece), stored.dtype)
    return shards


def merge_states(shards: Sequence[Mapping[str, Stored]]) -> dict[str, Stored]:
    if not shards:
        raise WeightsError("no shards to merge")
    names = list(shards[0])
    for rank, shard in enumerate(shards[1:], start=1):
        if set(shard) != set(names):
            diff = sorted(set(shard) ^ set(names))[:5]
            raise WeightsError(f"rank {rank} holds different tensors than rank 0 (e.g. {diff}); shards do not belong together")
    merged: dict[str, Stored] = {}
    for name in names:
        axis = split_axis(name)
        parts = [shard[name] for shard in shards]
        if axis is None:
            for rank, part in enumerate(parts[1:], start=1):
                if not np.array_equal(part.array, parts[0].array):
                    raise WeightsError(f"replicated tensor {name} differs between rank 0 and rank {rank}")
            merged[name] = parts[0]
        else:
            merged[name] = Stored(np.concatenate([p.array for p in parts], axis=axis), parts[0].dtype)
    return merged


# -- on disk -------------------------------------------------------------------------
def _kind_of(path: Path) -> str:
    if checkpoints.detect_ckpt(path):
        return "ckpt"
    if checkpoints.detect_safetensors(path):
        return "safetensors"
    raise WeightsError(f"{str(path)!r} holds no MindSpore checkpoint (.ckpt or MindSpore .safetensors)")


def read_any(path: Path) -> tuple[dict[str, Stored], LlamaConfig | None]:
    """A single checkpoint of any registered format, as :class:`Stored` tensors in their own dtype."""
    path = Path(path)
    if checkpoints.detect_ckpt(path) or checkpoints.detect_safetensors(path):
        return checkpoints.read_stored(path, _kind_of(path)), checkpoints.read_config(path)
    from zoo_mindspore.backend import detect_format
    from zoo_mindspore.weights import to_numpy

    spec = detect_format(path)
    config = spec.read_config(path) if spec.read_config else None
    if spec.load is None:
        raise WeightsError(f"checkpoint format {spec.name!r} cannot be read (it registered no loader)")
    state = spec.load(path, config)
    return {name: Stored(to_numpy(value), checkpoints.source_dtype(value)) for name, value in state.items()}, config


def rank_dirs(path: Path) -> list[Path]:
    dirs = sorted(
        (d for d in Path(path).glob("rank_*") if d.is_dir() and d.name[5:].isdigit()), key=lambda d: int(d.name[5:])
    )
    if not dirs:
        raise WeightsError(f"{str(path)!r} has no rank_0, rank_1, ... folders; it is not a distributed checkpoint")
    expected = [f"rank_{i}" for i in range(len(dirs))]
    if [d.name for d in dirs] != expected:
        raise WeightsError(f"{str(path)!r} has rank folders {[d.name for d in dirs]}; expected {expected}")
    return dirs


def split_checkpoint(src: Path, dst: Path, model_parallel: int, kind: str = "ckpt", dtype: str | None = None) -> list[Path]:
    """Write ``dst/rank_R/`` shards of the checkpoint at ``src`` for ``model_parallel`` ranks."""
    if kind not in KINDS:
        raise UsageError(f"unknown shard format {kind!r}; allowed: {', '.join(KINDS)}")
    state, config = read_any(Path(src))
    shards = split_state(state, model_parallel, config)
    dst = Path(dst)
    files = [checkpoints.save_kind(shard, None, dst / f"rank_{rank}", dtype, kind) for rank, shard in enumerate(shards)]
    checkpoints.write_params(config, dst)
    strategy = {
        "model_parallel": model_parallel,
        "format": kind,
        "rules": {name: split_axis(name) for name in state},
    }
    (dst / STRATEGY_FILE).write_text(json.dumps(strategy, indent=1) + "\n")
    return files


def merge_checkpoint(src: Path, dst: Path, kind: str = "ckpt", dtype: str | None = None) -> Path:
    """Merge ``src/rank_*/`` shards into one checkpoint at ``dst``."""
    if kind not in KINDS:
        raise UsageError(f"unknown output format {kind!r}; allowed: {', '.join(KINDS)}")
    src = Path(src)
    dirs = rank_dirs(src)
    strategy_file = src / STRATEGY_FILE
    if strategy_file.exists():
        strategy: dict[str, Any] = json.loads(strategy_file.read_text())
        if strategy.get("model_parallel") != len(dirs):
            raise WeightsError(
                f"{strategy_file} says model_parallel={strategy.get('model_parallel')} but {len(dirs)} rank folders exist"
            )
    shards = [checkpoints.read_stored(d, _kind_of(d)) for d in dirs]
    merged = merge_states(shards)
    config = checkpoints.read_config(src)
    return checkpoints.save_kind(merged, config, dst, dtype, kind)
