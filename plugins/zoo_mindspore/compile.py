"""How a step runs: compiled with ``mindspore.jit`` (default) or eagerly for debugging.

PyNative on CPU dispatches asynchronously and is 20-30x slower than it needs
to be unless ``mindspore.runtime.launch_blocking()`` is set, so the eager
path sets it; the compiled path builds one graph per input shape.
"""

from __future__ import annotations

import os
from typing import Any

_quiet_done = False


def quiet_mindspore() -> None:
    """Silence MindSpore's C++ logging unless the user chose a level (GLOG_v)."""
    global _quiet_done
    if not _quiet_done:
        os.environ.setdefault("GLOG_v", "3")
        os.environ.setdefault("GLOG_logtostderr", "1")
        _quiet_done = True


def make_step(model: Any, batch: int, length: int, dtype: str, compiled: bool, kernels: Any = None) -> Any:
    """The steps bound to one fresh static cache.

    Returns (step, decode): ``step(tokens, positions, mask, index) -> logits``
    for any number of new tokens, and ``decode(step_ids, mask) -> logits``
    through the fused CPU kernels (None without ``kernels``).
    """
    import mindspore as ms

    from zoo_mindspore.model import CachedStep

    cell = CachedStep(model, batch, length, dtype, kernels)
    decode = cell.decode_with_kernels if kernels is not None else None
    if compiled:
        return ms.jit(cell.construct), (ms.jit(decode) if decode is not None else None)
    ms.runtime.launch_blocking()
    return cell, decode
