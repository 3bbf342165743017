"""Frozen records that plugins pass to their ``register`` callbacks.

A spec is data: names, numbers, capabilities and the callables that do the
work. Callables must import their runtime (torch, mindspore, ...) inside the
function body so that registering a spec never imports a heavy package.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from codellama_zoo.errors import ConfigError

# Bytes per parameter for the dtypes `zoo info` reports memory for.
DTYPE_BYTES: dict[str, float] = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1, "int4": 0.5}

CAPABILITIES = frozenset({"completion", "infill", "chat"})
VARIANTS = frozenset({"base", "python", "instruct"})


def _positive(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if value <= 0:
        raise ConfigError(f"{attribute.name} must be a positive integer, got {value!r}")


@attrs.frozen(kw_only=True)
class LlamaConfig:
    """The Llama architecture as Meta's ``params.json`` describes it.

    Derived fields (``head_dim``, ``kv_heads``, ``n_rep``, ``ffn_hidden``) are
    computed here and nowhere else; build variants with ``attrs.evolve``.
    """

    dim: int = attrs.field(validator=_positive)
    n_layers: int = attrs.field(validator=_positive)
    n_heads: int = attrs.field(validator=_positive)
    n_kv_heads: int | None = None
    vocab_size: int = attrs.field(validator=_positive)
    multiple_of: int = attrs.field(default=256, validator=_positive)
    ffn_dim_multiplier: float | None = None
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_seq_len: int = attrs.field(default=4096, validator=_positive)

    head_dim: int = attrs.field(init=False)
    kv_heads: int = attrs.field(init=False)
    n_rep: int = attrs.field(init=False)
    ffn_hidden: int = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        if self.dim % self.n_heads:
            raise ConfigError(
                f"dim={self.dim} is not divisible by n_heads={self.n_heads}; "
                "choose a dim that is a multiple of the head count"
            )
        kv = self.n_heads if self.n_kv_heads is None else self.n_kv_heads
        if kv <= 0 or self.n_heads % kv:
            raise ConfigError(
                f"n_heads={self.n_heads} is not divisible by n_kv_heads={kv}; "
                "grouped-query attention needs whole groups"
            )
        if self.ffn_dim_multiplier is not None and self.ffn_dim_multiplier <= 0:
            raise ConfigError(f"ffn_dim_multiplier must be positive, got {self.ffn_dim_multiplier!r}")
        object.__setattr__(self, "head_dim", self.dim // self.n_heads)
        object.__setattr__(self, "kv_heads", kv)
        object.__setattr__(self, "n_rep", self.n_heads // kv)
        object.__setattr__(self, "ffn_hidden", meta_ffn_hidden(self.dim, self.multiple_of, self.ffn_dim_multiplier))

    def param_count(self) -> int:
        """Parameters of the model (untied embedding and output head)."""
        d, kv_dim = self.dim, self.kv_heads * self.head_dim
        attention = 2 * d * d + 2 * d * kv_dim
        mlp = 3 * d * self.ffn_hidden
        per_layer = attention + mlp + 2 * d
        return self.n_layers * per_layer + 2 * self.vocab_size * d + d

    def kv_cache_bytes_per_token(self, dtype: str = "bf16") -> float:
        """Bytes one token occupies in the KV cache (keys and values, all layers)."""
        return 2 * self.n_layers * self.kv_heads * self.head_dim * DTYPE_BYTES[dtype]

    def to_params(self) -> dict[str, Any]:
        """The config as Meta's ``params.json`` writes it."""
        return {
            "dim": self.dim,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "n_kv_heads": self.kv_heads,
            "vocab_size": self.vocab_size,
            "multiple_of": self.multiple_of,
            "ffn_dim_multiplier": self.ffn_dim_multiplier,
            "norm_eps": self.norm_eps,
            "rope_theta": self.rope_theta,
            "max_seq_len": self.max_seq_len,
        }


def meta_ffn_hidden(dim: int, multiple_of: int, ffn_dim_multiplier: float | None) -> int:
    """SwiGLU hidden size exactly as Meta's ``FeedForward.__init__`` computes it."""
    hidden = int(2 * (4 * dim) / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


def _str_tuple(value: Any) -> tuple[str, ...]:
    return tuple(value)


def _capabilities(value: Any) -> frozenset[str]:
    caps = frozenset(value)
    unknown = caps - CAPABILITIES
    if unknown:
        raise ConfigError(f"unknown capabilities {sorted(unknown)}; allowed: {sorted(CAPABILITIES)}")
    return caps


@attrs.frozen(kw_only=True)
class ModelSpec:
    """One runnable model variant: architecture, names and what it can do."""

    name: str
    family: str
    size: str
    variant: str
    config: LlamaConfig
    aliases: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    tokenizer: str = "sentencepiece"
    prompt_format: str = "completion"
    infill_formats: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    capabilities: frozenset[str] = attrs.field(default=frozenset({"completion"}), converter=_capabilities)
    context_length: int = 4096
    hf_repo: str | None = None
    published_params: float | None = None  # in billions, as the model card states
    description: str = ""
    weights: Callable[[], Any] | None = None  # returns a local weights directory shipped with the plugin
    source: str = ""  # upstream citation for the numbers

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities


@attrs.frozen(kw_only=True)
class BackendSpec:
    """A runtime that builds the architecture and runs it (torch, mindspore)."""

    name: str
    description: str = ""
    priority: int = 0  # `backend: auto` takes the highest-priority available one
    is_available: Callable[[], bool] = lambda: True
    devices: Callable[[], tuple[str, ...]] = lambda: ("cpu",)
    dtypes: tuple[str, ...] = ("fp32", "bf16", "fp16")
    load_model: Callable[..., Any] | None = None  # (config, weights_dir, device, dtype, attention) -> LanguageModel
    train: Callable[..., Any] | None = None  # (train config, ...) -> result; used by `zoo train`
    unavailable_reason: Callable[[], str] = lambda: ""


@attrs.frozen(kw_only=True)
class AttentionSpec:
    """An attention kernel for one backend."""

    name: str
    backend: str
    description: str = ""
    priority: int = 0  # `attention: auto` takes the highest-priority available one
    is_available: Callable[[str], bool] = lambda device: True  # device string, e.g. "cpu", "cuda:0"
    factory: Callable[[], Any] | None = None  # returns the attention callable
    unavailable_reason: Callable[[str], str] = lambda device: ""


@attrs.frozen(kw_only=True)
class TokenizerSpec:
    """A tokenizer implementation and the files it reads from a weights directory."""

    name: str
    description: str = ""
    files: tuple[str, ...] = ()
    load: Callable[..., Any] | None = None  # (path) -> tokenizer


@attrs.frozen(kw_only=True)
class PromptFormatSpec:
    """Turns a request (text, chat messages, prefix/suffix) into token ids."""

    name: str
    kind: str  # "completion", "chat" or "infill"
    description: str = ""
    build: Callable[..., Any] | None = None
    stop_tokens: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class GeneratorSpec:
    """A decoding strategy (greedy, sampling, ...)."""

    name: str
    description: str = ""
    factory: Callable[..., Any] | None = None


@attrs.frozen(kw_only=True)
class DatasetSpec:
    """A dataset: a reader of raw files and a preprocessor to token samples."""

    name: str
    description: str = ""
    read: Callable[..., Any] | None = None
    preprocess: Callable[..., Any] | None = None
    options: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class ParallelStrategySpec:
    """Transforms a built model for distributed execution."""

    name: str
    backend: str
    description: str = ""
    validate: Callable[..., Any] | None = None
    apply: Callable[..., Any] | None = None


@attrs.frozen(kw_only=True)
class CheckpointFormatSpec:
    """A weights layout on disk, detected from a directory."""

    name: str
    description: str = ""
    priority: int = 0  # detection tries higher priorities first
    detect: Callable[[Any], bool] = lambda path: False
    load: Callable[..., Any] | None = None
    save: Callable[..., Any] | None = None
    read_config: Callable[..., Any] | None = None  # (path) -> LlamaConfig | None


@attrs.frozen(kw_only=True)
class EvaluationSpec:
    """A benchmark: generation over its problems, then scoring."""

    name: str
    description: str = ""
    run: Callable[..., Any] | None = None
    requires: tuple[str, ...] = ()  # capabilities the model needs, e.g. ("infill",)


# kind name -> spec class: one entry per `register_*` hook (except commands).
SPEC_KINDS: dict[str, type] = {
    "models": ModelSpec,
    "backends": BackendSpec,
    "attention": AttentionSpec,
    "tokenizers": TokenizerSpec,
    "prompt_formats": PromptFormatSpec,
    "generators": GeneratorSpec,
    "datasets": DatasetSpec,
    "parallel_strategies": ParallelStrategySpec,
    "checkpoint_formats": CheckpointFormatSpec,
    "evaluations": EvaluationSpec,
}
