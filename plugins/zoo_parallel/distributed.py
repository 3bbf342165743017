"""Process-group setup shared by workers and tests: backend, device, timeouts."""

from __future__ import annotations

import datetime
import os
from typing import Any

TIMEOUT_ENV = "ZOO_DIST_TIMEOUT"
BACKEND_ENV = "ZOO_DIST_BACKEND"
DEFAULT_TIMEOUT_S = 300.0


def default_backend() -> str:
    """``nccl`` when this process has a CUDA device, otherwise ``gloo`` (CPU)."""
    import torch

    forced = os.environ.get(BACKEND_ENV)
    if forced:
        return forced
    return "nccl" if torch.cuda.is_available() else "gloo"


def device_for_rank() -> Any:
    """The device this rank computes on: ``cuda:LOCAL_RANK`` under nccl, else CPU."""
    import torch

    if default_backend() == "nccl":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def collective_timeout() -> datetime.timedelta:
    """How long a collective may wait for a peer before failing instead of hanging."""
    return datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))


def init_distributed() -> bool:
    """Join the process group described by torchrun's environment; False when not launched."""
    import torch.distributed as dist

    if dist.is_initialized():
        return True
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return False
    backend = default_backend()
    device = device_for_rank()
    kwargs: dict[str, Any] = {"backend": backend, "timeout": collective_timeout()}
    if backend == "nccl":
        kwargs["device_id"] = device
    dist.init_process_group(**kwargs)
    return True


def shutdown_distributed() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    return rank() == 0
