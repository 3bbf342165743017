"""Moving canonical state dicts (torch naming, numpy or torch values) in and out of the Cell.

The canonical naming is the PyTorch model's (``layers.0.attention.wq.weight``),
which is also the MindSpore Transformer's own parameter path, so loading is a
checked name-for-name copy. numpy has no bfloat16: bf16 tensors travel as
fp32 (exact) and are cast on the MindSpore side.
"""

from __future__ import annotations

from collections.abc import Mapping
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


def load_into(model: Any, state: Mapping[str, Any], source: str = "weights") -> None:
    """Copy ``state`` into ``model``'s parameters, casting to each parameter's dtype."""
    import mindspore as ms

    params = dict(model.parameters_and_names())
    missing = sorted(set(params) - set(state))
    unexpected = sorted(set(state) - set(params))
    if missing or unexpected:
        raise WeightsError(
            f"{source} do not match the architecture: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}; "
            "check that the checkpoint is a Llama checkpoint of this model size"
        )
    for name, param in params.items():
        array = to_numpy(state[name])
        if tuple(array.shape) != tuple(param.shape):
            raise WeightsError(
                f"{source}: tensor {name!r} has shape {tuple(array.shape)}, the model expects "
                f"{tuple(param.shape)}; the checkpoint is for a different configuration"
            )
        param.set_data(ms.Tensor(np.ascontiguousarray(array), dtype=param.dtype))


def state_dict(model: Any) -> dict[str, np.ndarray]:
    """The model's parameters as numpy (bf16 widened to fp32), canonical names."""
    return {name: to_numpy(param) for name, param in model.parameters_and_names()}


def init_random(model: Any, seed: int = 0, std: float = 0.02) -> None:
    """Normal(0, std) projections and embeddings, unit norms: for benchmarks and tests."""
    import mindspore as ms

    rng = np.random.default_rng(seed)
    for name, param in model.parameters_and_names():
        if name.endswith("norm.weight"):
            data = np.ones(param.shape, np.float32)
        else:
            data = rng.normal(0.0, std, size=param.shape).astype(np.float32)
        param.set_data(ms.Tensor(data, dtype=param.dtype))
