"""Run configurations and their YAML loading.

:func:`structure` turns plain data (from YAML or ``--set key=value``) into a
frozen attrs class, checking every key and value. Errors name the file, the
dotted key, the bad value and what is allowed, so a typo in a 200-line config
is found at once. Sections for training live with the trainer; they use the
same loader.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import attrs
import yaml

from codellama_zoo.errors import ConfigError

T = TypeVar("T")

DTYPES = ("auto", "fp32", "bf16", "fp16")


@attrs.frozen(kw_only=True)
class GenerateConfig:
    """How to decode: the knobs of ``zoo run`` and ``Model.generate``."""

    generator: str = "auto"  # "auto": greedy when temperature == 0, else sampling
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@attrs.frozen(kw_only=True)
class RunConfig:
    """Which model to run and where (``zoo run`` / ``codellama_zoo.load``)."""

    model: str | None = None
    weights: str | None = None
    backend: str = "auto"
    device: str = "auto"
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    attention: str = "auto"
    generate: GenerateConfig = attrs.field(factory=GenerateConfig)


def _where(source: str | None, key: str) -> str:
    prefix = f"{source}: " if source else ""
    return f"{prefix}key {key!r}" if key else f"{prefix}top level"


def structure(data: Any, cls: type[T], *, source: str | None = None, key: str = "") -> T:
    """Build ``cls`` (an attrs class) from ``data``, validating as it goes."""
    return typing.cast(T, _convert(data, cls, source, key))


def _convert(value: Any, tp: Any, source: str | None, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if attrs.has(tp):
        return _convert_attrs(value, tp, source, key)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, source, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{_where(source, key)}: {value!r} fits none of {tp}")
    if origin is Literal:
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{_where(source, key)}: got {value!r}; allowed values: {allowed}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            value = [value]
        item = args[0] if args else Any
        items = [_convert(v, item, source, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{_where(source, key)}: expected a mapping, got {value!r}")
        vt = args[1] if args else Any
        return {str(k): _convert(v, vt, source, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{_where(source, key)}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{_where(source, key)}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{_where(source, key)}: expected an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{_where(source, key)}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{_where(source, key)}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{_where(source, key)}: expected a string, got {value!r}")
        return str(value)
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{_where(source, key)}: expected null, got {value!r}")
        return None
    return value


def _convert_attrs(value: Any, cls: type, source: str | None, key: str) -> Any:
    if isinstance(value, cls):
        return value
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{_where(source, key)}: expected a mapping of {cls.__name__} fields, got {value!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in attrs.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for name, raw in value.items():
        sub = f"{key}.{name}" if key else str(name)
        if name not in fields:
            close = difflib.get_close_matches(str(name), list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{_where(source, sub)}: unknown key{hint} (allowed keys: {', '.join(fields)})")
        kwargs[name] = _convert(raw, hints[name], source, sub)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{_where(source, key)}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{_where(source, key)}: {exc}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a YAML mapping, with errors that name the file and line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {str(p)!r} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(p)!r}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{p}:{where}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``--set a.b=value`` overrides (values parsed as YAML scalars)."""
    result = dict(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set optimizer.learning_rate=1e-4")
        dotted, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw else ""
        node = result
        parts = dotted.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            child = dict(child) if isinstance(child, dict) else {}
            node[part] = child
            node = child
        node[parts[-1]] = value
    return result


def load_config(path: str | Path, cls: type[T], overrides: list[str] | tuple[str, ...] = ()) -> T:
    """Read a YAML file into ``cls``, with ``--set`` overrides applied first."""
    data = apply_overrides(read_yaml(path), overrides)
    return structure(data, cls, source=str(path))
