"""Reading safetensors files by memory map, and writing them one tensor at a time.

The reader maps the file (``MAP_PRIVATE``) and returns tensors that are views of
the mapping, so nothing is read until a tensor is used and nothing is copied
when it is (``load_state_dict(assign=True)`` keeps the views). The writer
streams each tensor's bytes straight to disk, so saving never holds a second
copy of the model in memory. Files follow the format spec
(https://github.com/huggingface/safetensors): an 8-byte little-endian header
length, a JSON header padded with spaces to 8 bytes, then the raw data.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from codellama_zoo.errors import WeightsError

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
CODES: dict[torch.dtype, str] = {v: k for k, v in DTYPES.items()}

_MAX_HEADER = 100_000_000


def read_header(path: str | Path) -> tuple[dict[str, Any], int]:
    """The JSON header (tensor name -> dtype, shape, data_offsets) and where the data starts."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise WeightsError(f"{p}: not a safetensors file (shorter than its 8-byte header length)")
            (n,) = struct.unpack("<Q", raw)
            if n > _MAX_HEADER:
                raise WeightsError(f"{p}: not a safetensors file (header length {n} is implausible)")
            header_bytes = f.read(n)
    except OSError as exc:
        raise WeightsError(f"cannot read {p}: {exc.strerror}") from None
    try:
        header = json.loads(header_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{p}: corrupt safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{p}: corrupt safetensors header (not a JSON object)")
    return header, 8 + n


def load_file(path: str | Path, names: Iterable[str] | None = None,
              dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file (or only ``names``), as views of a memory map.

    With ``dtype``, floating tensors of another dtype are read one at a time with plain
    file reads and cast, so the file's pages never all sit in memory beside the casts.
    """
    p = Path(path)
    header, start = read_header(p)
    size = p.stat().st_size
    wanted = None if names is None else set(names)
    storage = torch.UntypedStorage.from_file(str(p), shared=False, nbytes=size) if size else None
    reader = p.open("rb") if dtype is not None else None
    try:
        return _tensors(p, header, start, size, wanted, storage, dtype, reader)
    finally:
        if reader is not None:
            reader.close()


def _tensors(p: Path, header: dict[str, Any], start: int, size: int, wanted: set[str] | None,
             storage: Any, cast: torch.dtype | None, reader: Any) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name, info in header.items():
        if name == "__metadata__" or (wanted is not None and name not in wanted):
            continue
        try:
            dtype = DTYPES[info["dtype"]]
            shape = [int(s) for s in info["shape"]]
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise WeightsError(f"{p}: tensor {name!r} has an unsupported or corrupt entry {info!r}") from None
        itemsize = torch.empty(0, dtype=dtype).element_size()
        numel = 1
        for s in shape:
            numel *= s
        if end - begin != numel * itemsize or start + end > size:
            raise WeightsError(
                f"{p}: tensor {name!r} of shape {tuple(shape)} ({info['dtype']}) needs {numel * itemsize} bytes, "
                f"the file gives {end - begin} (truncated or corrupt file)"
            )
        if storage is None or numel == 0:
            out[name] = torch.empty(shape, dtype=dtype)
            continue
        offset = start + begin
        if reader is not None and cast is not None and dtype.is_floating_point and dtype != cast:
            raw = torch.empty(end - begin, dtype=torch.uint8)
            reader.seek(offset)
            if reader.readinto(raw.numpy().data) != end - begin:
                raise WeightsError(f"{p}: tensor {name!r} is truncated")
            out[name] = raw.view(dtype).view(shape).to(cast)
            del raw
            continue
        if offset % itemsize == 0:
            t = torch.empty(0, dtype=dtype)
            t.set_(storage, offset // itemsize, shape)  # type: ignore[call-overload]
        else:  # unaligned: copy this one tensor
            raw = torch.empty(0, dtype=torch.uint8)
            raw.set_(storage, offset, (end - begin,))  # type: ignore[call-overload]
            t = raw.clone().view(dtype).view(shape)
        out[name] = t
    return out


def tensor_nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def save_file(
    tensors: dict[str, torch.Tensor],
    path: str | Path,
    metadata: dict[str, str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Write ``tensors`` (in dict order) to ``path``; ``progress(nbytes)`` after each tensor."""
    header: dict[str, Any] = {}
    offset = 0
    for name, t in tensors.items():
        if t.dtype not in CODES:
            raise WeightsError(f"cannot store tensor {name!r} of dtype {t.dtype} in safetensors")
        n = tensor_nbytes(t)
        header[name] = {"dtype": CODES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with Path(path).open("wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for t in tensors.values():
            data = t.detach().to("cpu").contiguous().reshape(-1)
            if data.numel():
                f.write(data.view(torch.uint8).numpy().data)
            if progress is not None:
                progress(tensor_nbytes(t))
