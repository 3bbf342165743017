"""From a model name and/or a weights folder to a loaded, runnable model.

Backend-neutral: which backend, device, dtype and attention kernel to use
is resolved from what plugins registered (``auto`` picks the best available
one); the checkpoint's format is detected by the registered checkpoint
formats and its architecture read from its own ``config.json`` /
``params.json``. Everything that can be checked before weights are read is
checked first, so a wrong request fails fast with one clear line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs

from codellama_zoo.errors import BackendUnavailableError, CapabilityError, UsageError, WeightsError
from codellama_zoo.registry import get_registry
from codellama_zoo.specs import BackendSpec, CheckpointFormatSpec, LlamaConfig, ModelSpec

HOME_ENV = "ZOO_HOME"
DEFAULT_HOME = "~/.cache/codellama-zoo"
# Fields that must agree between a preset and a checkpoint (max_seq_len may differ).
ARCHITECTURE_FIELDS = ("dim", "n_layers", "n_heads", "kv_heads", "vocab_size", "ffn_hidden")
INFILL_FORMATS = ("infill-psm", "infill-spm")


def zoo_home() -> Path:
    """Where downloaded and converted weights live: ``$ZOO_HOME`` or ``~/.cache/codellama-zoo``."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def default_weights_dir(spec: ModelSpec) -> Path:
    return zoo_home() / spec.name


def _how_to_get(spec: ModelSpec | None, where: Path) -> str:
    if spec is None:
        return "pass --weights DIR with a Llama checkpoint folder"
    return (
        f"get them with `zoo download {spec.name}`, or `zoo convert SRC {where}` from a local checkpoint, "
        "or pass --weights DIR"
    )


def locate_weights(spec: ModelSpec | None, weights: str | Path | None) -> Path:
    """The weights folder: ``weights`` if given, else ``$ZOO_HOME/<model>``, else one the plugin ships."""
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_dir():
            raise WeightsError(f"weights folder {str(path)!r} does not exist; {_how_to_get(spec, path)}")
        return path
    if spec is None:
        raise UsageError("name a model (see `zoo models`) or pass --weights DIR with a checkpoint folder")
    path = default_weights_dir(spec)
    if path.is_dir() and any(path.iterdir()):
        return path
    if spec.weights is not None:
        return Path(spec.weights())
    raise WeightsError(
        f"no weights for {spec.name}: looked in {path} (set ${HOME_ENV} or pass --weights DIR); {_how_to_get(spec, path)}"
    )


def detect_format(path: Path) -> CheckpointFormatSpec:
    """The registered checkpoint format that recognises ``path`` (highest priority first)."""
    formats = sorted(get_registry().checkpoint_formats, key=lambda f: -f.priority)
    for fmt in formats:
        if fmt.detect(path):
            return fmt
    known = ", ".join(f.name for f in formats) or "none registered (is the torch plugin installed?)"
    raise WeightsError(
        f"{path} holds no checkpoint in a known format (known: {known}); point --weights at a folder with "
        "model weights, config.json/params.json and tokenizer.model"
    )


def check_matches(spec: ModelSpec, checkpoint: LlamaConfig, path: Path) -> None:
    """A named preset and the checkpoint must describe the same architecture."""
    diffs = [
        f"{name} {getattr(spec.config, name)} vs {getattr(checkpoint, name)}"
        for name in ARCHITECTURE_FIELDS
        if getattr(spec.config, name) != getattr(checkpoint, name)
    ]
    if diffs:
        raise WeightsError(
            f"the checkpoint in {path} is not {spec.name} (preset vs checkpoint: {'; '.join(diffs)}); "
            "pass the right model name, or run it with --weights alone to use the checkpoint's own config"
        )


@attrs.frozen(kw_only=True)
class Plan:
    """Everything decided before weights are read."""

    name: str
    spec: ModelSpec | None
    weights_dir: Path
    checkpoint_format: CheckpointFormatSpec
    config: LlamaConfig
    tokenizer: Any
    capabilities: frozenset[str]
    prompt_format: str
    chat_format: str | None
    infill_formats: tuple[str, ...]


def _chat_format_for(tokenizer: Any) -> str:
    return "codellama-70b-instruct" if getattr(tokenizer, "step_id", None) is not None else "codellama-instruct"


def plan(model: str | None, weights: str | Path | None = None) -> Plan:
    """Resolve the model, find and check its weights, config and tokenizer; read no tensors."""
    registry = get_registry()
    spec = registry.model(model) if model else None
    path = locate_weights(spec, weights)
    fmt = detect_format(path)
    checkpoint = fmt.read_config(path) if fmt.read_config is not None else None
    if spec is None and checkpoint is None:
        raise WeightsError(
            f"{path} has no config.json or params.json to read the architecture from; name the model "
            "(`zoo run MODEL --weights DIR`) so its preset is used"
        )
    if spec is not None and checkpoint is not None:
        check_matches(spec, checkpoint, path)
    config = checkpoint if checkpoint is not None else spec.config  # type: ignore[union-attr]
    tokenizer_spec = registry.tokenizers.get(spec.tokenizer if spec else "sentencepiece")
    missing = [f for f in tokenizer_spec.files if not (path / f).exists()]
    if missing or tokenizer_spec.load is None:
        raise WeightsError(
            f"{path} has no {', '.join(missing)}; copy the tokenizer file(s) of the checkpoint next to its weights"
        )
    tokenizer = tokenizer_spec.load(path)
    if tokenizer.vocab_size > config.vocab_size:
        raise WeightsError(
            f"tokenizer in {path} has {tokenizer.vocab_size} pieces but the model has vocab_size "
            f"{config.vocab_size}; the tokenizer.model belongs to another checkpoint"
        )
    if spec is not None:
        capabilities = spec.capabilities
        chat_format = spec.prompt_format if spec.supports("chat") else None
        return Plan(
            name=spec.name, spec=spec, weights_dir=path, checkpoint_format=fmt, config=config, tokenizer=tokenizer,
            capabilities=capabilities, prompt_format=spec.prompt_format, chat_format=chat_format,
            infill_formats=spec.infill_formats,
        )  # fmt: skip
    # A bare checkpoint: it can infill if its tokenizer has the pieces; chat is the user's call.
    can_infill = bool(getattr(tokenizer, "can_infill", False))
    return Plan(
        name=path.name, spec=None, weights_dir=path, checkpoint_format=fmt, config=config, tokenizer=tokenizer,
        capabilities=frozenset({"completion", "chat", *(("infill",) if can_infill else ())}),
        prompt_format="completion", chat_format=_chat_format_for(tokenizer),
        infill_formats=INFILL_FORMATS if can_infill else (),
    )  # fmt: skip


def require_capability(name: str, capabilities: frozenset[str], capability: str) -> None:
    if capability not in capabilities:
        extra = " (only Code Llama 7B and 13B base/Instruct were trained to fill in the middle)" if capability == "infill" else ""
        raise CapabilityError(
            f"{name} cannot {capability}{extra}; it supports {', '.join(sorted(capabilities))}"
        )


# -- backend, device, dtype, attention --------------------------------------------------------


def resolve_backend(name: str = "auto") -> BackendSpec:
    backends = get_registry().backends
    if name != "auto":
        spec = backends.get(name)
        if not spec.is_available():
            reason = spec.unavailable_reason() or "its runtime is not installed"
            raise BackendUnavailableError(f"backend {name!r} is not available: {reason}")
        return spec
    usable = [b for b in sorted(backends, key=lambda b: -b.priority) if b.is_available() and b.load_model is not None]
    if not usable:
        known = ", ".join(backends.names()) or "none"
        raise BackendUnavailableError(
            f"no backend is available (registered: {known}); install one, e.g. pip install 'codellama-zoo[torch]'"
        )
    return usable[0]


def resolve_device(backend: BackendSpec, device: str = "auto") -> str:
    devices = tuple(backend.devices())
    if device == "auto":
        accelerators = [d for d in devices if d != "cpu"]
        return accelerators[0] if accelerators else "cpu"
    kinds = {d.split(":")[0] for d in devices}
    if device not in devices and device.split(":")[0] not in kinds:
        raise BackendUnavailableError(
            f"device {device!r} is not available to backend {backend.name!r}; available: {', '.join(devices)}"
        )
    return device


def resolve_dtype(backend: BackendSpec, device: str, dtype: str = "auto") -> str:
    if dtype == "auto":
        # Half precision where it is fast; CPUs compute fp32 best.
        if device == "cpu":
            return "fp32"
        if device.startswith("mps") and "fp16" in backend.dtypes:
            return "fp16"  # Apple GPUs lack fast bf16
        return "bf16" if "bf16" in backend.dtypes else backend.dtypes[0]
    if dtype not in backend.dtypes:
        raise UsageError(f"dtype {dtype!r} is not supported by backend {backend.name!r}; choose one of {', '.join(backend.dtypes)}")
    return dtype


def resolve_attention(backend: BackendSpec, device: str, name: str = "auto") -> str:
    registry = get_registry()
    kernels = [a for a in registry.attention if a.backend == backend.name]
    if name != "auto":
        spec = registry.attention_for(backend.name, name)
        if not spec.is_available(device):
            reason = spec.unavailable_reason(device) or f"not usable on {device}"
            raise BackendUnavailableError(f"attention {name!r} is not available: {reason}")
        return name
    usable = [a for a in sorted(kernels, key=lambda a: -a.priority) if a.is_available(device)]
    return usable[0].name if usable else "auto"


@attrs.frozen(kw_only=True)
class Placement:
    backend: BackendSpec
    device: str
    dtype: str
    attention: str


def place(backend: str = "auto", device: str = "auto", dtype: str = "auto", attention: str = "auto") -> Placement:
    spec = resolve_backend(backend)
    dev = resolve_device(spec, device)
    return Placement(
        backend=spec, device=dev, dtype=resolve_dtype(spec, dev, dtype), attention=resolve_attention(spec, dev, attention)
    )


def load_language_model(p: Plan, where: Placement) -> Any:
    """Build the architecture on the chosen backend and read the weights."""
    if where.backend.load_model is None:
        raise BackendUnavailableError(f"backend {where.backend.name!r} cannot load models for inference")
    return where.backend.load_model(p.config, p.weights_dir, where.device, where.dtype, where.attention)
