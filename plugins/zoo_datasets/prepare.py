"""``zoo data prepare``: dataset reader → preprocessor → storage, with progress."""

from __future__ import annotations

import datetime
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from codellama_zoo.errors import UsageError
from codellama_zoo.registry import get_registry
from codellama_zoo.specs import DatasetSpec
from zoo_datasets.storage import DatasetWriter

_RESERVED = {"tokenizer", "seq_length", "stats"}  # passed by prepare() itself, never options


def _accepted(fn: Callable[..., Any] | None) -> dict[str, inspect.Parameter]:
    if fn is None:
        return {}
    params = inspect.signature(fn).parameters
    return {name: p for name, p in list(params.items())[1:] if name not in _RESERVED}


def _coerce(name: str, value: Any, param: inspect.Parameter) -> Any:
    default = param.default
    if default is inspect.Parameter.empty or default is None or isinstance(value, type(default)):
        return value
    try:
        if isinstance(default, bool):
            return str(value).lower() in ("1", "true", "yes")
        if isinstance(default, tuple):
            return str(value)
        return type(default)(value)
    except (TypeError, ValueError):
        raise UsageError(f"option {name}={value!r}: expected a {type(default).__name__}") from None


def split_options(spec: DatasetSpec, options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Route ``-o key=value`` options to the reader or the preprocessor, checking names."""
    read_params, prep_params = _accepted(spec.read), _accepted(spec.preprocess)
    read_opts: dict[str, Any] = {}
    prep_opts: dict[str, Any] = {}
    for name, value in options.items():
        if name in read_params:
            read_opts[name] = _coerce(name, value, read_params[name])
        elif name in prep_params:
            prep_opts[name] = _coerce(name, value, prep_params[name])
        else:
            allowed = ", ".join(sorted(set(read_params) | set(prep_params))) or "none"
            raise UsageError(f"dataset {spec.name!r} has no option {name!r}; its options: {allowed}")
    return read_opts, prep_opts


def prepare(
    name: str,
    *,
    input: str | Path | None,
    tokenizer: Any,
    seq_length: int,
    output: str | Path,
    formats: tuple[str, ...] = ("numpy",),
    options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Tokenise dataset ``name`` into ``output``; returns the written metadata."""
    from tqdm import tqdm

    if seq_length <= 0:
        raise UsageError(f"--seq-length must be a positive number of tokens, got {seq_length}")
    spec = get_registry().datasets.get(name)
    if spec.read is None or spec.preprocess is None:
        raise UsageError(f"dataset {name!r} cannot be prepared: its plugin gives no reader/preprocessor")
    read_opts, prep_opts = split_options(spec, options or {})
    if input is None and name != "humaneval":
        raise UsageError(f"dataset {name!r} needs --input (a file or folder to read)")
    stats: dict[str, Any] = {}
    if "stats" in inspect.signature(spec.read).parameters:
        read_opts["stats"] = stats
    describe = getattr(tokenizer, "describe", None)
    meta: dict[str, Any] = {
        "dataset": name,
        "input": str(input) if input is not None else None,
        "tokenizer": describe() if callable(describe) else {"type": type(tokenizer).__name__},
        "bos_id": tokenizer.bos_id,
        "eos_id": tokenizer.eos_id,
        "pad_id": tokenizer.pad_id,
        "seq_length": seq_length,
        "options": {k: v for k, v in {**read_opts, **prep_opts}.items() if k != "stats"},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "counts": stats,
    }
    show = sys.stderr.isatty() if progress is None else progress
    with DatasetWriter(output, formats, meta, overwrite=overwrite) as writer:
        records: Iterator[Any] = spec.read(input, **read_opts)
        records = iter(tqdm(records, desc=f"{name}", unit="doc", disable=not show, file=sys.stderr))
        for sample in spec.preprocess(records, tokenizer, seq_length, stats, **prep_opts):
            writer.write(sample)
        writer.meta["counts"] = dict(stats)
    return writer.meta
