"""MindSpore checkpoint formats: ``.ckpt`` and MindSpore safetensors, with the seed's names.

On disk the tensors carry the parameter names of the seed's MindFormers
converter (``model.tok_embeddings.embedding_weight``,
``model.layers.N.attention.wq.weight``, ``model.norm_out.weight``,
``lm_head.weight``); in memory they use the canonical torch naming every
format shares. The architecture is written beside the weights as Meta's
``params.json``. Values are stored bit for bit in the requested dtype (bf16
included), so HF -> MindSpore -> HF round trips are exact.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import attrs
import numpy as np

from codellama_zoo.errors import UsageError, WeightsError
from codellama_zoo.specs import LlamaConfig

CKPT_FILE = "model.ckpt"
SAFETENSORS_FILE = "model.safetensors"
PARAMS_FILE = "params.json"
SAFETENSORS_TAG = "ms"  # MindSpore writes {"__metadata__": {"format": "ms"}}
DTYPE_NAMES = ("fp32", "fp16", "bf16")

class Stored(NamedTuple):
    """A tensor as numpy plus the dtype it is stored in (bf16 widened exactly to fp32)."""

    array: np.ndarray
    dtype: str


# canonical name <-> seed name; layer tensors keep their path under "model."
_TOP_LEVEL = {
    "tok_embeddings.weight": "model.tok_embeddings.embedding_weight",
    "norm.weight": "model.norm_out.weight",
    "output.weight": "lm_head.weight",
}
_TOP_LEVEL_BACK = {seed: canonical for canonical, seed in _TOP_LEVEL.items()}
_LAYER = re.compile(
    r"layers\.\d+\.(attention\.w[qkvo]|feed_forward\.w[123]|attention_norm|ffn_norm)\.weight"
)


def to_seed_name(name: str) -> str:
    if name in _TOP_LEVEL:
        return _TOP_LEVEL[name]
    if _LAYER.fullmatch(name):
        return f"model.{name}"
    raise WeightsError(f"tensor {name!r} is not part of a Llama state dict; cannot name it in a MindSpore checkpoint")


def is_model_tensor(name: str) -> bool:
    """False for what MindFormers training checkpoints carry besides weights (optimizer moments, step, lr, ...)."""
    if name in _TOP_LEVEL_BACK:
        return True
    return name.startswith("model.") and "freqs" not in name


def to_canonical_name(name: str) -> str:
    if name in _TOP_LEVEL_BACK:
        return _TOP_LEVEL_BACK[name]
    if name.startswith("model.") and _LAYER.fullmatch(name[len("model."):]):
        return name[len("model."):]
    raise WeightsError(
        f"MindSpore checkpoint tensor {name!r} is not a Llama parameter the seed's converter writes "
        "(expected model.tok_embeddings.embedding_weight, model.layers.N.attention.wq.weight, ..., lm_head.weight)"
    )


# -- detection and config ------------------------------------------------------------
def _files(path: Path, suffix: str) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path] if path.suffix == suffix else []
    if path.is_dir():
        return sorted(path.glob(f"*{suffix}"))
    return []


def safetensors_header(file: Path) -> dict[str, Any]:
    with open(file, "rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        if size <= 0 or size > 100_000_000:
            raise WeightsError(f"{file} is not a safetensors file (header size {size})")
        return dict(json.loads(handle.read(size)))


def detect_ckpt(path: Path) -> bool:
    return bool(_files(path, ".ckpt"))


def detect_safetensors(path: Path) -> bool:
    """MindSpore's own safetensors: tagged ``format: ms`` or named like the seed (header only)."""
    for file in _files(path, ".safetensors"):
        try:
            header = safetensors_header(file)
        except (OSError, ValueError, WeightsError):
            continue
        if header.get("__metadata__", {}).get("format") == SAFETENSORS_TAG:
            return True
        if "model.tok_embeddings.embedding_weight" in header or "lm_head.weight" in header and any(
            key.startswith("model.layers.") and ".attention.wq." in key for key in header
        ):
            return True
    return False


def read_config(path: Path) -> LlamaConfig | None:
    """The architecture from ``params.json`` beside the weights, if present."""
    path = Path(path)
    params = (path if path.is_dir() else path.parent) / PARAMS_FILE
    if not params.exists():
        return None
    data = json.loads(params.read_text())
    fields = {f.name for f in attrs.fields(LlamaConfig) if f.init}
    return LlamaConfig(**{key: value for key, value in data.items() if key in fields})


# -- reading -------------------------------------------------------------------------
def _single(path: Path, suffix: str) -> Path:
    files = _files(path, suffix)
    if not files:
        raise WeightsError(f"no {suffix} file in {str(path)!r}")
    if len(files) > 1:
        raise WeightsError(
            f"{str(path)!r} holds {len(files)} {suffix} files ({', '.join(f.name for f in files[:4])}); "
            "one checkpoint per directory is expected (merge tensor-parallel shards with `zoo mindspore merge`)"
        )
    return files[0]


def _ms_tensor_to_numpy(value: Any) -> tuple[np.ndarray, str]:
    import mindspore as ms

    if value.dtype == ms.bfloat16:
        return value.float().asnumpy(), "bf16"
    array = value.asnumpy()
    return array, {np.dtype(np.float16): "fp16"}.get(array.dtype, "fp32")


def read_ckpt_numpy(path: Path) -> dict[str, np.ndarray]:
    """Canonical names -> numpy (bf16 widened to fp32) from a ``.ckpt``."""
    return {name: array for name, (array, _) in _read_ckpt(path).items()}


def read_ckpt_tensors(path: Path) -> dict[str, Any]:
    """Canonical names -> the MindSpore tensors of a ``.ckpt`` as parsed (no numpy copies; bf16 stays bf16)."""
    from zoo_mindspore.backend import require_mindspore

    ms = require_mindspore()
    raw = ms.load_checkpoint(str(_single(path, ".ckpt")))
    return {to_canonical_name(name): value for name, value in raw.items() if is_model_tensor(name)}


def _read_ckpt(path: Path) -> dict[str, tuple[np.ndarray, str]]:
    from zoo_mindspore.backend import require_mindspore

    ms = require_mindspore()
    raw = ms.load_checkpoint(str(_single(path, ".ckpt")))
    return {to_canonical_name(name): _ms_tensor_to_numpy(value) for name, value in raw.items() if is_model_tensor(name)}


_ST_DTYPES = {"F32": (np.float32, "fp32"), "F16": (np.float16, "fp16"), "BF16": (np.uint16, "bf16")}


def _read_safetensors(path: Path) -> dict[str, tuple[np.ndarray, str]]:
    """Memory-mapped read; bf16 comes back as raw uint16 bits (tagged ``bf16``)."""
    file = _single(path, ".safetensors")
    header = safetensors_header(file)
    start = 8 + int.from_bytes(open(file, "rb").read(8), "little")
    blob = np.memmap(file, dtype=np.uint8, mode="c")  # copy-on-write: writable views, file untouched
    out: dict[str, tuple[np.ndarray, str]] = {}
    for name, info in header.items():
        if name == "__metadata__" or not is_model_tensor(name):
            continue
        if info["dtype"] not in _ST_DTYPES:
            raise WeightsError(f"{file}: tensor {name!r} has dtype {info['dtype']}; only F32, F16 and BF16 are supported")
        np_dtype, label = _ST_DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        array = blob[start + begin : start + end].view(np_dtype).reshape(info["shape"])
        out[to_canonical_name(name)] = (array, label)
    return out


def bf16_bits_to_fp32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def read_safetensors_numpy(path: Path) -> dict[str, np.ndarray]:
    return {name: stored.array for name, stored in read_stored(path, "safetensors").items()}


def read_stored(path: Path, kind: str) -> dict[str, Stored]:
    """Canonical names -> :class:`Stored` from one ``.ckpt`` (kind "ckpt") or MindSpore safetensors."""
    if kind == "ckpt":
        return {name: Stored(array, label) for name, (array, label) in _read_ckpt(path).items()}
    out = {}
    for name, (array, label) in _read_safetensors(path).items():
        out[name] = Stored(bf16_bits_to_fp32(array) if label == "bf16" else np.asarray(array), label)
    return out


NUMPY_READERS = {"mindspore": read_ckpt_numpy, "mindspore-safetensors": read_safetensors_numpy}
# what the backend loads from: tensors as stored, so a matching dtype moves into the model without a copy
BACKEND_READERS = {"mindspore": read_ckpt_tensors, "mindspore-safetensors": read_safetensors_numpy}


def _to_torch(array: np.ndarray, label: str, bits: bool) -> Any:
    import torch

    if label == "bf16":
        if bits:
            return torch.from_numpy(np.ascontiguousarray(array).view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(np.ascontiguousarray(array)).to(torch.bfloat16)
    return torch.from_numpy(array if array.flags.writeable else np.array(array))


def load_ckpt(path: Path, config: LlamaConfig | None = None) -> dict[str, Any]:
    """Canonical torch tensors in their stored dtype."""
    return {name: _to_torch(array, label, bits=False) for name, (array, label) in _read_ckpt(path).items()}


def load_safetensors(path: Path, config: LlamaConfig | None = None) -> dict[str, Any]:
    return {name: _to_torch(array, label, bits=True) for name, (array, label) in _read_safetensors(path).items()}


# -- writing -------------------------------------------------------------------------
def source_dtype(value: Any) -> str:
    text = str(getattr(value, "dtype", ""))
    if "bfloat16" in text.lower():
        return "bf16"
    if "float16" in text or "Float16" in text:
        return "fp16"
    return "fp32"


def _ms_items(state_dict: Mapping[str, Any], dtype: str | None) -> list[dict[str, Any]]:
    from zoo_mindspore.backend import require_mindspore
    from zoo_mindspore.weights import to_numpy

    ms = require_mindspore()
    if dtype is not None and dtype not in DTYPE_NAMES:
        raise UsageError(f"unknown dtype {dtype!r} for a MindSpore checkpoint; allowed: {', '.join(DTYPE_NAMES)}")
    targets = {"fp32": ms.float32, "fp16": ms.float16, "bf16": ms.bfloat16}
    items = []
    for name, value in state_dict.items():
        if isinstance(value, Stored):
            source, array = value.dtype, value.array
        else:
            source, array = source_dtype(value), to_numpy(value)
        target = targets[dtype or source]
        array = np.ascontiguousarray(array)
        items.append({"name": to_seed_name(name), "data": ms.Tensor(array, dtype=target)})
    return items


def write_params(config: LlamaConfig | None, dst: Path) -> None:
    if config is not None:
        (dst / PARAMS_FILE).write_text(json.dumps(config.to_params(), indent=2) + "\n")


def _prepare(dst: Path | str) -> Path:
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    return dst


def save_ckpt(
    state_dict: Mapping[str, Any],
    config: LlamaConfig | None,
    dst: Path,
    dtype: str | None = None,
    *,
    progress: Callable[[int], Any] | None = None,
    **options: Any,
) -> Path:
    """Write ``dst/model.ckpt`` (+ ``params.json``); ``dtype`` None keeps each tensor's dtype."""
    return save_kind(state_dict, config, dst, dtype, "ckpt", progress)


def save_safetensors(
    state_dict: Mapping[str, Any],
    config: LlamaConfig | None,
    dst: Path,
    dtype: str | None = None,
    *,
    progress: Callable[[int], Any] | None = None,
    **options: Any,
) -> Path:
    """Write ``dst/model.safetensors`` (MindSpore's writer, tagged ``format: ms``) + ``params.json``."""
    return save_kind(state_dict, config, dst, dtype, "safetensors", progress)


def save_kind(
    state_dict: Mapping[str, Any],
    config: LlamaConfig | None,
    dst: Path | str,
    dtype: str | None,
    kind: str,
    progress: Callable[[int], Any] | None = None,
) -> Path:
    """Values may be torch tensors, numpy arrays or :class:`Stored`; kind is "ckpt" or "safetensors"."""
    import mindspore as ms

    dst = _prepare(dst)
    file = dst / (CKPT_FILE if kind == "ckpt" else SAFETENSORS_FILE)
    items = _ms_items(state_dict, dtype)
    ms.save_checkpoint(items, str(file), format=kind)
    write_params(config, dst)
    if progress is not None:
        progress(sum(item["data"].nbytes for item in items))
    return file
