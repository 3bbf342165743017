"""Moving canonical state dicts (torch naming, numpy or torch values) in and out of the Cell.

The canonical naming is the PyTorch model's (``layers.0.attention.wq.weight``),
which is also the MindSpore Transformer's own parameter path, so loading is a
checked name-for-name copy. numpy has no bfloat16: bf16 tensors travel as
fp32 (exact) and are cast on the MindSpore side.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping, MutableMapping
from typing import Any

import numpy as np

from codellama_zoo.errors import WeightsError


def to_numpy(value: Any) -> np.ndarray:
    """A torch tensor (any dtype, bf16 widened exactly to fp32) or array as numpy."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach"):  # torch.Tensor, without importing torch here
        import torch

        tensor = value.detach().cpu()
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()
        return tensor.numpy()
    if hasattr(value, "asnumpy"):  # mindspore Tensor / Parameter
        import mindspore as ms

        if value.dtype == ms.bfloat16:
            value = value.float()
        return value.asnumpy()
    return np.asarray(value)


_FUSED = {"attention.wqkv": ("attention.wq", "attention.wk", "attention.wv"), "feed_forward.w13": ("feed_forward.w1", "feed_forward.w3")}


def canonical_shapes(config: Any) -> dict[str, tuple[int, ...]]:
    """Canonical tensor name -> shape, in the PyTorch model's parameter order."""
    d, f, v = config.dim, config.ffn_hidden, config.vocab_size
    q, kv = config.n_heads * config.head_dim, config.kv_heads * config.head_dim
    shapes: dict[str, tuple[int, ...]] = {"tok_embeddings.weight": (v, d)}
    for i in range(config.n_layers):
        prefix = f"layers.{i}."
        shapes |= {
            prefix + "attention.wq.weight": (q, d), prefix + "attention.wk.weight": (kv, d),
            prefix + "attention.wv.weight": (kv, d), prefix + "attention.wo.weight": (d, q),
            prefix + "feed_forward.w1.weight": (f, d), prefix + "feed_forward.w2.weight": (d, f),
            prefix + "feed_forward.w3.weight": (f, d),
            prefix + "attention_norm.weight": (d,), prefix + "ffn_norm.weight": (d,),
        }
    return shapes | {"norm.weight": (d,), "output.weight": (v, d)}


def unfuse_state(state: Mapping[str, np.ndarray], config: Any) -> dict[str, np.ndarray]:
    """The fused model's names back to the canonical ones."""
    q, kv, f = config.n_heads * config.head_dim, config.kv_heads * config.head_dim, config.ffn_hidden
    sizes = {"attention.wqkv": (q, kv, kv), "feed_forward.w13": (f, f)}
    out: dict[str, np.ndarray] = {}
    for name, array in state.items():
        key = next((k for k in _FUSED if name.endswith(f".{k}.weight")), None)
        if key is None:
            out[name] = array
            continue
        prefix = name[: -len(f"{key}.weight")]
        bounds = np.cumsum(sizes[key])[:-1]
        for part, piece in zip(_FUSED[key], np.split(array, bounds, 0), strict=True):
            out[f"{prefix}{part}.weight"] = piece
    return out


def canonical_parts(name: str) -> list[str]:
    """The canonical tensors a (possibly fused) parameter is made of, in row order."""
    for fused, parts in _FUSED.items():
        if name.endswith(f".{fused}.weight"):
            prefix = name[: -len(f"{fused}.weight")]
            return [f"{prefix}{part}.weight" for part in parts]
    return [name]


def load_into(model: Any, state: MutableMapping[str, Any], source: str = "weights") -> None:
    """Move ``state`` (canonical names) into ``model``'s parameters, casting to each parameter's dtype.

    One parameter at a time (fused ones concatenated on the spot), and each
    entry is dropped from ``state`` once used, so the peak memory is the model
    plus one tensor, not two models. A MindSpore tensor of the parameter's
    dtype and shape (a ``.ckpt`` read as is) becomes the parameter's data
    without a copy.
    """
    import mindspore as ms

    params = dict(model.parameters_and_names())
    wanted = {part for name in params for part in canonical_parts(name)}
    missing = sorted(wanted - set(state))
    unexpected = sorted(set(state) - wanted)
    if missing or unexpected:
        raise WeightsError(
            f"{source} do not match the architecture: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}; "
            "check that the checkpoint is a Llama checkpoint of this model size"
        )
    for name, param in params.items():
        values = [state.pop(part) for part in canonical_parts(name)]
        if len(values) == 1 and isinstance(values[0], ms.Tensor) and values[0].dtype == param.dtype \
                and tuple(values[0].shape) == tuple(param.shape):
            param.set_data(values.pop())
            continue
        parts = [to_numpy(value) for value in values]
        del values
        array = parts[0] if len(parts) == 1 else np.concatenate(parts, 0)
        if tuple(array.shape) != tuple(param.shape):
            raise WeightsError(
                f"{source}: tensor {name!r} has shape {tuple(array.shape)}, the model expects "
                f"{tuple(param.shape)}; the checkpoint is for a different configuration"
            )
        param.set_data(ms.Tensor(np.ascontiguousarray(array), dtype=param.dtype))
        del parts, array
    gc.collect()  # MindSpore tensors from load_checkpoint sit in reference cycles: free them now, not later


def state_dict(model: Any) -> dict[str, np.ndarray]:
    """The model's parameters as numpy (bf16 widened to fp32), canonical names."""
    state = {name: to_numpy(param) for name, param in model.parameters_and_names()}
    return unfuse_state(state, model.config) if getattr(model, "fused", False) else state


def init_random(model: Any, seed: int = 0, std: float = 0.02) -> None:
    """Normal(0, std) projections and embeddings, unit norms (canonical order: fused or not, same weights)."""
    shapes = canonical_shapes(model.config)
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in shapes.items():
        if name.endswith("norm.weight"):
            state[name] = np.ones(shape, np.float32)
        else:
            state[name] = rng.normal(0.0, std, size=shape).astype(np.float32)
    load_into(model, state, source="random weights")
