"""The ``mindspore`` backend: availability, devices, attention choice and model loading."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

from codellama_zoo.errors import BackendUnavailableError, CapabilityError, UsageError, WeightsError
from codellama_zoo.specs import LlamaConfig

log = logging.getLogger(__name__)

DTYPES = ("fp32", "fp16", "bf16")
PYNATIVE_ENV = "ZOO_MINDSPORE_PYNATIVE"
THREADS_ENV = "ZOO_MINDSPORE_THREADS"
_threads_set = 0  # the thread count once set (MindSpore takes it once per process)


def set_cpu_threads(threads: int | None = None) -> int:
    """CPU kernel threads: ``threads``, else $ZOO_MINDSPORE_THREADS, else the usable cores.

    MindSpore's default (25) oversubscribes small machines badly; it can be set
    once per process, before the first kernel runs.
    """
    global _threads_set
    if _threads_set:
        return _threads_set
    wanted = threads or int(os.environ.get(THREADS_ENV, "0")) or len(os.sched_getaffinity(0))
    ms = require_mindspore()
    ms.device_context.cpu.op_tuning.threads_num(wanted)
    _threads_set = wanted
    return wanted
DEVICE_TARGETS = {"cpu": "CPU", "ascend": "Ascend", "gpu": "GPU"}


def is_available() -> bool:
    return importlib.util.find_spec("mindspore") is not None


def unavailable_reason() -> str:
    if is_available():
        return ""
    return "MindSpore is not installed; install it with `pip install 'codellama-zoo[mindspore]'` (needs numpy<2)"


def require_mindspore() -> Any:
    if not is_available():
        raise BackendUnavailableError(unavailable_reason())
    from zoo_mindspore.compile import quiet_mindspore

    quiet_mindspore()
    import mindspore

    return mindspore


def devices() -> tuple[str, ...]:
    if not is_available():
        return ()
    ms = require_mindspore()
    return tuple(name for name, target in DEVICE_TARGETS.items() if ms.hal.is_available(target))


def device_kind(device: str) -> str:
    """``"ascend:1"`` -> ``"ascend"``; ``"auto"`` -> the best device present."""
    kind = device.split(":", 1)[0].lower()
    if kind == "auto":
        present = devices()
        return next((k for k in ("ascend", "gpu") if k in present), "cpu")
    if kind not in DEVICE_TARGETS:
        raise UsageError(f"unknown MindSpore device {device!r}; allowed: {', '.join(DEVICE_TARGETS)} (or auto)")
    return kind


def set_device(device: str) -> str:
    """Point MindSpore at ``device`` (checked), returning its kind."""
    ms = require_mindspore()
    kind = device_kind(device)
    if not ms.hal.is_available(DEVICE_TARGETS[kind]):
        raise BackendUnavailableError(
            f"MindSpore device {device!r} is not available here (available: {', '.join(devices())}); pass --device cpu"
        )
    index = int(device.split(":", 1)[1]) if ":" in device else None
    try:
        if index is None:
            ms.set_device(DEVICE_TARGETS[kind])
        else:
            ms.set_device(DEVICE_TARGETS[kind], index)
    except RuntimeError as exc:  # the runtime already started (an earlier MindSpore call in this process)
        current = ms.get_context("device_target")
        if current != DEVICE_TARGETS[kind] or index not in (None, ms.get_context("device_id")):
            raise BackendUnavailableError(
                f"MindSpore already runs on {current} in this process and cannot switch to {device!r}; "
                "use that device or start a new process"
            ) from exc
    if kind == "cpu":
        set_cpu_threads()
    return kind


def check_dtype(dtype: str, kind: str) -> None:
    if dtype not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r} for the mindspore backend; allowed: {', '.join(DTYPES)}")
    if dtype == "bf16" and kind != "ascend":
        raise CapabilityError(
            f"MindSpore computes in bf16 only on Ascend, not on {kind}; use --dtype fp32 (fastest on CPU) or fp16"
        )


def resolve_attention(name: str, kind: str) -> tuple[str, Any]:
    """(chosen name, kernel) for ``name`` (or ``auto``) on a device kind; logs every better kernel passed over."""
    from codellama_zoo.registry import get_registry

    registry = get_registry()
    candidates = sorted(
        (spec for spec in registry.attention if spec.backend == "mindspore"), key=lambda s: -s.priority
    )
    if name == "auto":
        usable = [spec for spec in candidates if spec.is_available(kind)]
        if not usable:
            raise BackendUnavailableError(f"no MindSpore attention implementation is available on {kind}")
        spec = usable[0]
    else:
        spec = registry.attention_for("mindspore", name)
        if not spec.is_available(kind):
            usable_names = [s.name for s in candidates if s.is_available(kind)]
            raise BackendUnavailableError(
                f"attention {name!r} is not available on {kind}: {spec.unavailable_reason(kind)}; "
                f"use one of {', '.join(usable_names)} or auto"
            )
    for better in candidates:
        if better.priority <= spec.priority:
            break
        if not better.is_available(kind):
            log.info(
                "mindspore: attention %r is not available on %s (%s); falling back to %r",
                better.name, kind, better.unavailable_reason(kind), spec.name,
            )
    return spec.name, spec.factory() if spec.factory else None


def detect_format(path: Path) -> Any:
    """The registered checkpoint format of a weights directory, highest priority first."""
    from codellama_zoo.registry import get_registry

    formats = sorted(get_registry().checkpoint_formats, key=lambda s: -s.priority)
    for spec in formats:
        if spec.detect(path):
            return spec
    raise WeightsError(
        f"no checkpoint format recognises {str(path)!r}; known formats: {', '.join(s.name for s in formats)}"
    )


def read_state(path: Path, config: LlamaConfig) -> dict[str, Any]:
    """Canonical tensors from any registered format; MindSpore's own formats skip torch entirely."""
    from zoo_mindspore import checkpoints

    spec = detect_format(path)
    if spec.name in checkpoints.BACKEND_READERS:
        return checkpoints.BACKEND_READERS[spec.name](path)
    if spec.load is None:
        raise WeightsError(f"checkpoint format {spec.name!r} cannot be read (it registered no loader)")
    return dict(spec.load(path, config))


def load_model(
    config: LlamaConfig,
    weights_dir: str | Path | None,
    device: str = "cpu",
    dtype: str = "fp32",
    attention: str = "auto",
    compiled: bool | None = None,
    seed: int = 0,
) -> Any:
    """A :class:`~codellama_zoo.runtime.LanguageModel` on MindSpore.

    ``weights_dir`` None gives seeded random weights (benchmarks, smoke tests).
    ``compiled=False`` (or ``ZOO_MINDSPORE_PYNATIVE=1``) runs PyNative with
    blocking launches, for debugging.
    """
    require_mindspore()
    if compiled is None:
        compiled = os.environ.get(PYNATIVE_ENV) != "1"
    kind = set_device(device)
    check_dtype(dtype, kind)
    attention_name, kernel = resolve_attention(attention, kind)

    from zoo_mindspore import weights
    from zoo_mindspore.model import Transformer
    from zoo_mindspore.runner import MindSporeLanguageModel

    model = Transformer(config, dtype=dtype, fused=True)  # inference: wq|wk|wv and w1|w3 as single projections
    if kernel is not None:
        model.set_attention(kernel)
    if weights_dir is None:
        weights.init_random(model, seed=seed)
    else:
        path = Path(weights_dir)
        if not path.exists():
            raise WeightsError(f"weights directory {str(path)!r} does not exist")
        weights.load_into(model, read_state(path, config), source=str(path))
    model.set_train(False)
    kernels = None
    if kind == "cpu" and dtype == "fp32" and attention_name == "math":
        from zoo_mindspore.cpu_kernels import load_kernels

        kernels = load_kernels(threads=set_cpu_threads())
    return MindSporeLanguageModel(
        model, config, device=kind, dtype=dtype, attention=attention_name, compiled=compiled, kernels=kernels
    )
