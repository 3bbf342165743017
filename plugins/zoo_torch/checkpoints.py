"""Checkpoint formats: Hugging Face safetensors / bin, Meta consolidated shards, the zoo layout.

Every format converts to and from one *canonical state dict*: the parameter
names of :class:`zoo_torch.model.Transformer` (Meta's names) with the query and
key projections in Hugging Face's rotate-half RoPE layout. The contract each
registered :class:`~codellama_zoo.specs.CheckpointFormatSpec` follows (other
runtimes' formats too, e.g. ``mindspore``):

* ``detect(path) -> bool``: from file names (and at most a small JSON file);
* ``read_config(path) -> LlamaConfig | None``: the architecture the directory declares;
* ``load(path, config=None) -> dict[str, torch.Tensor]``: canonical names, memory-mapped
  where the format allows (safetensors, zip ``.bin``/``.pth``), never unpickling
  anything but tensors;
* ``save(state_dict, config, path, *, progress=None, **options)``: writes into the
  existing empty directory ``path`` (callers go through :func:`save_checkpoint`, which
  writes to a temporary directory and renames it into place). ``progress(n)``
  counts bytes written. Options a format does not know are ignored.

Layouts: ``hf`` (``config.json`` + ``model.safetensors`` or shards with
``model.safetensors.index.json``), ``hf-bin`` (``pytorch_model*.bin``), ``meta``
(``params.json`` + ``consolidated.NN.pth``, model-parallel shards) and ``zoo``
(``config.json`` marked ``"format": "codellama-zoo"`` + safetensors in canonical
names).
"""

from __future__ import annotations

import inspect
import json
import os
import pickle
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs

from codellama_zoo.errors import ConfigError, UsageError, WeightsError
from codellama_zoo.specs import CheckpointFormatSpec, LlamaConfig

ZOO_FORMAT_MARK = "codellama-zoo"
ZOO_FORMAT_VERSION = 1
DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
# Files that travel with the weights (tokenizer, generation defaults); copied by `zoo convert`.
SIDE_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
              "generation_config.json")
DEFAULT_MAX_SHARD_BYTES = 5 * 10**9

Progress = Callable[[int], None] | None

# ---------------------------------------------------------------------------
# The canonical names and shapes
# ---------------------------------------------------------------------------


def expected_shapes(config: LlamaConfig) -> dict[str, tuple[int, ...]]:
    """Canonical tensor name -> shape, in the model's order."""
    c, f, v = config.dim, config.ffn_hidden, config.vocab_size
    q, kv = config.n_heads * config.head_dim, config.kv_heads * config.head_dim
    shapes: dict[str, tuple[int, ...]] = {"tok_embeddings.weight": (v, c)}
    for i in range(config.n_layers):
        p = f"layers.{i}."
        shapes.update({
            p + "attention.wq.weight": (q, c),
            p + "attention.wk.weight": (kv, c),
            p + "attention.wv.weight": (kv, c),
            p + "attention.wo.weight": (c, q),
            p + "feed_forward.w1.weight": (f, c),
            p + "feed_forward.w2.weight": (c, f),
            p + "feed_forward.w3.weight": (f, c),
            p + "attention_norm.weight": (c,),
            p + "ffn_norm.weight": (c,),
        })
    shapes["norm.weight"] = (c,)
    shapes["output.weight"] = (v, c)
    return shapes


def same_architecture(a: LlamaConfig, b: LlamaConfig) -> bool:
    """Same tensor shapes, RoPE theta and norm eps (HF config.json cannot say whether 22016 came from
    ``ffn_dim_multiplier=1.0`` or from none, so compare what the numbers produce, not the fields)."""
    return expected_shapes(a) == expected_shapes(b) and a.rope_theta == b.rope_theta and a.norm_eps == b.norm_eps


def check_state_dict(state_dict: dict[str, Any], config: LlamaConfig, source: str) -> None:
    """Raise one WeightsError naming every missing, unexpected or mis-shaped tensor."""
    expected = expected_shapes(config)
    problems = []
    for name, shape in expected.items():
        if name not in state_dict:
            problems.append(f"missing tensor {name} (expected shape {shape})")
            continue
        t = state_dict[name]
        found = tuple(getattr(t, "shape", ()))
        if found != shape:
            problems.append(f"tensor {name}: expected shape {shape}, found {found}")
    for name in state_dict:
        if name not in expected:
            problems.append(f"unexpected tensor {name} (shape {tuple(getattr(state_dict[name], 'shape', ()))})")
    if problems:
        shown = problems[:8]
        more = f"; and {len(problems) - 8} more" if len(problems) > 8 else ""
        raise WeightsError(
            f"weights in {source} do not match the architecture (dim={config.dim}, n_layers={config.n_layers}, "
            f"n_heads={config.n_heads}, kv_heads={config.kv_heads}, vocab={config.vocab_size}, "
            f"ffn={config.ffn_hidden}): " + "; ".join(shown) + more
        )


def cast_state_dict(state_dict: dict[str, Any], dtype: str | None) -> dict[str, Any]:
    """Floating tensors to ``dtype`` (fp32/bf16/fp16); None keeps them as they are."""
    if dtype is None:
        return state_dict

    target = torch_dtype(dtype)
    return {k: (t.to(target) if t.is_floating_point() and t.dtype != target else t) for k, t in state_dict.items()}


def torch_dtype(name: str) -> Any:
    import torch

    table = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if name not in table:
        raise UsageError(f"unknown dtype {name!r}; allowed: {', '.join(table)}")
    return table[name]


def dtype_name(dtype: Any) -> str:
    import torch

    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))


# ---------------------------------------------------------------------------
# Hugging Face names and config.json
# ---------------------------------------------------------------------------

_HF_LAYER = {
    "self_attn.q_proj": "attention.wq",
    "self_attn.k_proj": "attention.wk",
    "self_attn.v_proj": "attention.wv",
    "self_attn.o_proj": "attention.wo",
    "mlp.gate_proj": "feed_forward.w1",
    "mlp.down_proj": "feed_forward.w2",
    "mlp.up_proj": "feed_forward.w3",
    "input_layernorm": "attention_norm",
    "post_attention_layernorm": "ffn_norm",
}
_OURS_LAYER = {v: k for k, v in _HF_LAYER.items()}
_HF_TOP = {"model.embed_tokens.weight": "tok_embeddings.weight", "model.norm.weight": "norm.weight",
           "lm_head.weight": "output.weight"}
_OURS_TOP = {v: k for k, v in _HF_TOP.items()}
_HF_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.(.+)\.weight$")
_OURS_LAYER_RE = re.compile(r"^layers\.(\d+)\.(.+)\.weight$")
_HF_IGNORED = re.compile(r"(rotary_emb\.inv_freq|\.rope\.freqs)$")


def hf_to_ours(name: str) -> str | None:
    if name in _HF_TOP:
        return _HF_TOP[name]
    m = _HF_LAYER_RE.match(name)
    if m and m.group(2) in _HF_LAYER:
        return f"layers.{m.group(1)}.{_HF_LAYER[m.group(2)]}.weight"
    return None


def ours_to_hf(name: str) -> str:
    if name in _OURS_TOP:
        return _OURS_TOP[name]
    m = _OURS_LAYER_RE.match(name)
    if m and m.group(2) in _OURS_LAYER:
        return f"model.layers.{m.group(1)}.{_OURS_LAYER[m.group(2)]}.weight"
    raise WeightsError(f"tensor {name!r} has no Hugging Face name")


def _from_hf_names(tensors: dict[str, Any], source: str) -> dict[str, Any]:
    out = {}
    for name, t in tensors.items():
        if _HF_IGNORED.search(name):
            continue
        ours = hf_to_ours(name)
        out[ours if ours is not None else name] = t  # unknown names are reported by check_state_dict
    return out


def ffn_fields(dim: int, hidden: int) -> tuple[int, float | None]:
    """(multiple_of, ffn_dim_multiplier) with which Meta's formula gives ``hidden``."""
    from codellama_zoo.specs import meta_ffn_hidden

    for multiple_of in (256, 4096, 128, 64, 32, 16, 8, 4, 2, 1):
        for multiplier in (None, 1.0, 1.3):
            if meta_ffn_hidden(dim, multiple_of, multiplier) == hidden:
                return multiple_of, multiplier
    base = int(2 * (4 * dim) / 3)
    multiplier = (hidden + 0.5) / base
    if meta_ffn_hidden(dim, 1, multiplier) == hidden:
        return 1, multiplier
    raise ConfigError(f"cannot express intermediate_size={hidden} for hidden_size={dim} as Meta's FFN formula")


def _norm_kv(n_heads: int, n_kv_heads: Any) -> int | None:
    return None if n_kv_heads in (None, n_heads) else int(n_kv_heads)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WeightsError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: expected a JSON object")
    return data


def config_from_hf(data: dict[str, Any], source: str = "config.json") -> LlamaConfig:
    """A LlamaConfig from a Hugging Face ``config.json`` (transformers 4 and 5 spellings)."""
    try:
        dim, heads = int(data["hidden_size"]), int(data["num_attention_heads"])
        rope = data.get("rope_parameters") or data.get("rope_scaling") or {}
        rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else "default"
        if rope_type not in ("default", None):
            raise WeightsError(f"{source}: RoPE scaling {rope_type!r} is not supported (only the default RoPE)")
        theta = data.get("rope_theta", rope.get("rope_theta") if isinstance(rope, dict) else None) or 10000.0
        head_dim = data.get("head_dim")
        if head_dim not in (None, dim // heads):
            raise WeightsError(f"{source}: head_dim={head_dim} != hidden_size/num_attention_heads is not supported")
        for flag in ("attention_bias", "mlp_bias"):
            if data.get(flag):
                raise WeightsError(f"{source}: {flag}=true is not supported by the Llama architecture here")
        if data.get("hidden_act", "silu") != "silu":
            raise WeightsError(f"{source}: hidden_act={data['hidden_act']!r} is not supported (only silu)")
        hidden = int(data["intermediate_size"])
        multiple_of, multiplier = ffn_fields(dim, hidden)
        if "multiple_of" in data:  # Meta's own fields, which our writer keeps beside intermediate_size
            from codellama_zoo.specs import meta_ffn_hidden

            theirs = (int(data["multiple_of"]), data.get("ffn_dim_multiplier"))
            if meta_ffn_hidden(dim, *theirs) == hidden:
                multiple_of, multiplier = theirs
        return LlamaConfig(
            dim=dim,
            n_layers=int(data["num_hidden_layers"]),
            n_heads=heads,
            n_kv_heads=_norm_kv(heads, data.get("num_key_value_heads")),
            vocab_size=int(data["vocab_size"]),
            multiple_of=multiple_of,
            ffn_dim_multiplier=multiplier,
            norm_eps=float(data.get("rms_norm_eps", 1e-6)),
            rope_theta=float(theta),
            max_seq_len=int(data.get("max_position_embeddings", 4096)),
        )
    except KeyError as exc:
        raise WeightsError(f"{source}: missing key {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"{source}: {exc}") from None


def config_to_hf(config: LlamaConfig, dtype: str | None = None) -> dict[str, Any]:
    """The ``config.json`` that ``transformers.LlamaForCausalLM`` reads."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": config.dim,
        "intermediate_size": config.ffn_hidden,
        "multiple_of": config.multiple_of,  # Meta's fields, ignored by transformers, kept for exact round trips
        "ffn_dim_multiplier": config.ffn_dim_multiplier,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.kv_heads,
        "head_dim": config.head_dim,
        "vocab_size": config.vocab_size,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,
        "max_position_embeddings": config.max_seq_len,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": DTYPE_NAMES.get(dtype or "fp32", "float32"),
    }


# ---------------------------------------------------------------------------
# Meta: params.json, interleaved RoPE, model-parallel shards
# ---------------------------------------------------------------------------

# How fairscale's model-parallel layers in Meta's llama/model.py split each tensor.
_META_SPLIT_DIM1 = re.compile(r"^(tok_embeddings\.weight|layers\.\d+\.(attention\.wo|feed_forward\.w2)\.weight)$")
_META_SPLIT_DIM0 = re.compile(
    r"^(output\.weight|layers\.\d+\.(attention\.w[qkv]|feed_forward\.w[13])\.weight)$"
)


def meta_split_dim(name: str) -> int | None:
    """0 for column-parallel, 1 for row-parallel / the embedding, None for replicated tensors."""
    if _META_SPLIT_DIM0.match(name):
        return 0
    if _META_SPLIT_DIM1.match(name):
        return 1
    return None


def permute_to_rotate_half(w: Any, n_heads: int) -> Any:
    """Meta's interleaved RoPE pairs -> Hugging Face's rotate-half layout (per head)."""
    out_dim, in_dim = w.shape
    return w.reshape(n_heads, out_dim // n_heads // 2, 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)


def permute_to_interleaved(w: Any, n_heads: int) -> Any:
    """Hugging Face's rotate-half layout -> Meta's interleaved RoPE pairs (inverse of the above)."""
    out_dim, in_dim = w.shape
    return w.reshape(n_heads, 2, out_dim // n_heads // 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)


def config_from_meta(params: dict[str, Any], vocab_size: int | None, source: str = "params.json") -> LlamaConfig:
    try:
        vocab = int(params.get("vocab_size", -1))
        if vocab <= 0:
            if vocab_size is None:
                raise WeightsError(f"{source}: vocab_size is {vocab} and no tok_embeddings tensor to read it from")
            vocab = vocab_size
        heads = int(params["n_heads"])
        return LlamaConfig(
            dim=int(params["dim"]),
            n_layers=int(params["n_layers"]),
            n_heads=heads,
            n_kv_heads=_norm_kv(heads, params.get("n_kv_heads")),
            vocab_size=vocab,
            multiple_of=int(params.get("multiple_of", 256)),
            ffn_dim_multiplier=params.get("ffn_dim_multiplier"),
            norm_eps=float(params.get("norm_eps", 1e-5)),
            rope_theta=float(params.get("rope_theta", 10000.0)),
            max_seq_len=int(params.get("max_seq_len", 4096)),
        )
    except KeyError as exc:
        raise WeightsError(f"{source}: missing key {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"{source}: {exc}") from None


def _meta_shards(path: Path) -> list[Path]:
    return sorted(path.glob("consolidated.*.pth"), key=lambda p: p.name)


# ---------------------------------------------------------------------------
# Torch pickles, safely
# ---------------------------------------------------------------------------


def torch_load(file: Path, mmap: bool = True) -> dict[str, Any]:
    """``torch.load(weights_only=True)``, memory-mapped when the file allows; only tensors accepted."""
    import torch

    try:
        try:
            data = torch.load(file, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as exc:
            if "mmap" not in str(exc) and "zip" not in str(exc):
                raise
            data = torch.load(file, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()
        detail = next((line for line in first if "GLOBAL" in line or "Unsupported" in line), first[0] if first else "")
        raise WeightsError(
            f"{file} contains a pickled object that is not a tensor ({detail.strip()}); refusing to unpickle "
            "arbitrary objects (loaded with weights_only=True). Re-save it as tensors only, or as safetensors."
        ) from None
    except (OSError, EOFError) as exc:
        raise WeightsError(f"cannot read {file}: {exc}") from None
    if isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise WeightsError(f"{file}: expected a dict of tensors, found {type(data).__name__}")
    for key, value in data.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{file}: entry {key!r} is a {type(value).__name__}, not a tensor")
    return data


def _own(t: Any) -> Any:
    """A tensor with its own compact storage (torch.save writes whole storages)."""
    return t.detach().to("cpu").contiguous().clone()


# ---------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------


def _has(path: Path, *patterns: str) -> bool:
    return any(any(path.glob(p)) for p in patterns)


def _is_zoo(path: Path) -> bool:
    cfg = path / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text(encoding="utf-8")).get("format") == ZOO_FORMAT_MARK
    except (OSError, ValueError, AttributeError):
        return False


def _shard_groups(tensors: dict[str, Any], max_bytes: int | None, shards: int | None) -> list[list[str]]:
    names = list(tensors)
    if shards is not None and shards > 1:
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        max_bytes = -(-total // shards)
    if not max_bytes:
        return [names]
    groups: list[list[str]] = [[]]
    size = 0
    for name in names:
        n = tensors[name].numel() * tensors[name].element_size()
        if groups[-1] and size + n > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += n
    return groups


def _write_sharded_safetensors(tensors: dict[str, Any], path: Path, stem: str, progress: Progress,
                               max_bytes: int | None, shards: int | None, metadata: dict[str, str]) -> None:
    from zoo_torch import safetensors_io

    groups = _shard_groups(tensors, max_bytes, shards)
    if len(groups) == 1:
        safetensors_io.save_file(tensors, path / f"{stem}.safetensors", metadata, progress)
        return
    weight_map = {}
    for i, group in enumerate(groups, 1):
        fname = f"{stem}-{i:05d}-of-{len(groups):05d}.safetensors"
        safetensors_io.save_file({n: tensors[n] for n in group}, path / fname, metadata, progress)
        weight_map.update(dict.fromkeys(group, fname))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (path / f"{stem}.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


def _read_safetensors_dir(path: Path, stem: str, dtype: str | None = None) -> dict[str, Any]:
    from zoo_torch import safetensors_io

    index = path / f"{stem}.safetensors.index.json"
    if index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise WeightsError(f"{index}: no weight_map")
        files = sorted(set(weight_map.values()))
    elif (path / f"{stem}.safetensors").is_file():
        files = [f"{stem}.safetensors"]
    else:
        files = sorted(p.name for p in path.glob(f"{stem}-*-of-*.safetensors"))
    if not files:
        raise WeightsError(f"no {stem}*.safetensors in {path}")
    tensors: dict[str, Any] = {}
    for fname in files:
        file = path / fname
        if not file.is_file():
            raise WeightsError(f"{file} is listed in the index but does not exist")
        tensors.update(safetensors_io.load_file(file, dtype=torch_dtype(dtype) if dtype else None))
    return tensors


# ---------------------------------------------------------------------------
# The formats
# ---------------------------------------------------------------------------


def detect_hf(path: Path) -> bool:
    return _has(path, "model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors") and not _is_zoo(path)


def read_config_hf(path: Path) -> LlamaConfig | None:
    cfg = Path(path) / "config.json"
    return config_from_hf(_read_json(cfg), str(cfg)) if cfg.is_file() else None


def load_hf(path: Path, config: LlamaConfig | None = None, dtype: str | None = None) -> dict[str, Any]:
    path = Path(path)
    sd = _from_hf_names(_read_safetensors_dir(path, "model", dtype), str(path))
    return _untie(sd, path)


def _untie(sd: dict[str, Any], path: Path) -> dict[str, Any]:
    if "output.weight" not in sd and "tok_embeddings.weight" in sd:
        cfg = path / "config.json"
        if cfg.is_file() and _read_json(cfg).get("tie_word_embeddings"):
            sd["output.weight"] = sd["tok_embeddings.weight"]
    return sd


def save_hf(state_dict: dict[str, Any], config: LlamaConfig, path: Path, *, progress: Progress = None,
            max_shard_bytes: int | None = DEFAULT_MAX_SHARD_BYTES, shards: int | None = None, **_: Any) -> None:
    path = Path(path)
    tensors = {ours_to_hf(k): v for k, v in state_dict.items()}
    dtype = dtype_name(next(iter(tensors.values())).dtype) if tensors else None
    (path / "config.json").write_text(json.dumps(config_to_hf(config, dtype), indent=2) + "\n", encoding="utf-8")
    _write_sharded_safetensors(tensors, path, "model", progress, max_shard_bytes, shards, {"format": "pt"})


def detect_hf_bin(path: Path) -> bool:
    return _has(path, "pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*.bin")


def load_hf_bin(path: Path, config: LlamaConfig | None = None) -> dict[str, Any]:
    path = Path(path)
    index = path / "pytorch_model.bin.index.json"
    if index.is_file():
        weight_map = _read_json(index).get("weight_map") or {}
        files = sorted(set(weight_map.values()))
    elif (path / "pytorch_model.bin").is_file():
        files = ["pytorch_model.bin"]
    else:
        files = sorted(p.name for p in path.glob("pytorch_model-*.bin"))
    tensors: dict[str, Any] = {}
    for fname in files:
        tensors.update(torch_load(path / fname))
    return _untie(_from_hf_names(tensors, str(path)), path)


def save_hf_bin(state_dict: dict[str, Any], config: LlamaConfig, path: Path, *, progress: Progress = None,
                max_shard_bytes: int | None = DEFAULT_MAX_SHARD_BYTES, shards: int | None = None, **_: Any) -> None:
    import torch

    path = Path(path)
    tensors = {ours_to_hf(k): v for k, v in state_dict.items()}
    dtype = dtype_name(next(iter(tensors.values())).dtype) if tensors else None
    (path / "config.json").write_text(json.dumps(config_to_hf(config, dtype), indent=2) + "\n", encoding="utf-8")
    groups = _shard_groups(tensors, max_shard_bytes, shards)
    weight_map = {}
    for i, group in enumerate(groups, 1):
        fname = "pytorch_model.bin" if len(groups) == 1 else f"pytorch_model-{i:05d}-of-{len(groups):05d}.bin"
        torch.save({n: _own(tensors[n]) for n in group}, path / fname)
        weight_map.update(dict.fromkeys(group, fname))
        if progress is not None:
            progress(sum(tensors[n].numel() * tensors[n].element_size() for n in group))
    if len(groups) > 1:
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (path / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


def detect_meta(path: Path) -> bool:
    return bool(_meta_shards(path)) and (path / "params.json").is_file()


def read_config_meta(path: Path) -> LlamaConfig | None:
    path = Path(path)
    params_file = path / "params.json"
    if not params_file.is_file():
        return None
    params = _read_json(params_file)
    vocab = None
    if int(params.get("vocab_size", -1)) <= 0:
        shards = _meta_shards(path)
        if shards:
            emb = torch_load(shards[0]).get("tok_embeddings.weight")
            vocab = int(emb.shape[0]) if emb is not None else None
    return config_from_meta(params, vocab, str(params_file))


def load_meta(path: Path, config: LlamaConfig | None = None) -> dict[str, Any]:
    import torch

    path = Path(path)
    config = config or read_config_meta(path)
    if config is None:
        raise WeightsError(f"{path}: no params.json; pass the architecture (a model name) to load Meta shards")
    files = _meta_shards(path)
    if not files:
        raise WeightsError(f"no consolidated.NN.pth in {path}")
    # One shard: memory-mapped, nothing copied. Several: each tensor is concatenated into a new one, so
    # read them without mmap (one storage per tensor) and free each part once merged: peak ~ 1x the weights
    # rather than 2x (a mapping stays resident until its last tensor is gone).
    shards = [torch_load(f, mmap=len(files) == 1) for f in files]
    names = [n for n in shards[0] if n != "rope.freqs"]
    for f, shard in zip(files[1:], shards[1:], strict=False):
        if set(n for n in shard if n != "rope.freqs") != set(names):
            diff = sorted(set(names) ^ set(n for n in shard if n != "rope.freqs"))
            raise WeightsError(f"{f} holds different tensors than {files[0].name}: {', '.join(diff[:5])}")
    out: dict[str, Any] = {}
    for name in names:
        parts = [s.pop(name) for s in shards]
        dim = meta_split_dim(name)
        t = parts[0] if len(parts) == 1 or dim is None else torch.cat(parts, dim=dim)
        if name.endswith("attention.wq.weight") and t.dim() == 2:
            t = permute_to_rotate_half(t, config.n_heads)
        elif name.endswith("attention.wk.weight") and t.dim() == 2:
            t = permute_to_rotate_half(t, config.kv_heads)
        out[name] = t
    return out


def save_meta(state_dict: dict[str, Any], config: LlamaConfig, path: Path, *, progress: Progress = None,
              shards: int | None = None, **_: Any) -> None:
    import torch

    path = Path(path)
    n = shards or 1
    for name, t in state_dict.items():
        dim = meta_split_dim(name)
        if dim is not None and t.shape[dim] % n:
            raise UsageError(f"cannot split {name} of shape {tuple(t.shape)} into {n} model-parallel shards")
    if config.kv_heads % n:
        raise UsageError(f"n_kv_heads={config.kv_heads} is not divisible by {n} shards")
    params = config.to_params()
    (path / "params.json").write_text(json.dumps(params, indent=2) + "\n", encoding="utf-8")
    full: dict[str, Any] = {}
    for name, t in state_dict.items():
        if name.endswith("attention.wq.weight"):
            t = permute_to_interleaved(t, config.n_heads)
        elif name.endswith("attention.wk.weight"):
            t = permute_to_interleaved(t, config.kv_heads)
        full[name] = t
    for rank in range(n):
        shard = {}
        for name, t in full.items():
            dim = meta_split_dim(name)
            shard[name] = _own(t if dim is None or n == 1 else t.chunk(n, dim=dim)[rank])
        torch.save(shard, path / f"consolidated.{rank:02d}.pth")
        if progress is not None:
            progress(sum(t.numel() * t.element_size() for t in shard.values()))


def detect_zoo(path: Path) -> bool:
    return _is_zoo(path)


def config_to_zoo(config: LlamaConfig) -> dict[str, Any]:
    fields = {f.name: getattr(config, f.name) for f in attrs.fields(LlamaConfig) if f.init}
    return {"format": ZOO_FORMAT_MARK, "format_version": ZOO_FORMAT_VERSION, "architecture": "llama", **fields}


def read_config_zoo(path: Path) -> LlamaConfig | None:
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return None
    data = _read_json(cfg)
    names = {f.name for f in attrs.fields(LlamaConfig) if f.init}
    unknown = set(data) - names - {"format", "format_version", "architecture", "dtype"}
    if unknown:
        raise WeightsError(f"{cfg}: unknown keys {sorted(unknown)}")
    try:
        fields = {k: v for k, v in data.items() if k in names}
        fields["n_kv_heads"] = _norm_kv(int(fields["n_heads"]), fields.get("n_kv_heads"))
        return LlamaConfig(**fields)
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise WeightsError(f"{cfg}: invalid architecture ({exc})") from None


def load_zoo(path: Path, config: LlamaConfig | None = None, dtype: str | None = None) -> dict[str, Any]:
    return _read_safetensors_dir(Path(path), "model", dtype)


def save_zoo(state_dict: dict[str, Any], config: LlamaConfig, path: Path, *, progress: Progress = None,
             max_shard_bytes: int | None = DEFAULT_MAX_SHARD_BYTES, shards: int | None = None, **_: Any) -> None:
    path = Path(path)
    data = config_to_zoo(config)
    if state_dict:
        data["dtype"] = dtype_name(next(iter(state_dict.values())).dtype)
    (path / "config.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    _write_sharded_safetensors(dict(state_dict), path, "model", progress, max_shard_bytes, shards,
                               {"format": "pt", "layout": ZOO_FORMAT_MARK})


FORMATS: tuple[CheckpointFormatSpec, ...] = (
    CheckpointFormatSpec(
        name="zoo", priority=40, detect=detect_zoo, load=load_zoo, save=save_zoo, read_config=read_config_zoo,
        description="codellama-zoo layout: config.json (LlamaConfig) + safetensors in the model's own names",
    ),
    CheckpointFormatSpec(
        name="hf", priority=30, detect=detect_hf, load=load_hf, save=save_hf, read_config=read_config_hf,
        description="Hugging Face: config.json + model.safetensors (or shards with model.safetensors.index.json)",
    ),
    CheckpointFormatSpec(
        name="hf-bin", priority=20, detect=detect_hf_bin, load=load_hf_bin, save=save_hf_bin,
        read_config=read_config_hf,
        description="Hugging Face: config.json + pytorch_model*.bin (read with weights_only=True)",
    ),
    CheckpointFormatSpec(
        name="meta", priority=10, detect=detect_meta, load=load_meta, save=save_meta, read_config=read_config_meta,
        description="Meta: params.json + consolidated.NN.pth model-parallel shards (interleaved RoPE)",
    ),
)


# ---------------------------------------------------------------------------
# Generic entry points over every registered format
# ---------------------------------------------------------------------------


def formats() -> list[CheckpointFormatSpec]:
    from codellama_zoo.registry import get_registry

    return sorted(get_registry().checkpoint_formats, key=lambda s: -s.priority)


def get_format(name: str) -> CheckpointFormatSpec:
    from codellama_zoo.registry import get_registry

    return get_registry().checkpoint_formats.get(name)


def detect_format(path: str | Path) -> CheckpointFormatSpec:
    """The registered format that recognises directory ``path`` (highest priority first)."""
    p = Path(path)
    if not p.exists():
        raise WeightsError(f"weights directory {str(p)!r} does not exist")
    if not p.is_dir():
        raise WeightsError(f"{str(p)!r} is not a directory; pass the directory that holds the checkpoint files")
    for spec in formats():
        if spec.detect(p):
            return spec
    listing = ", ".join(sorted(x.name for x in p.iterdir())[:10]) or "nothing"
    known = ", ".join(s.name for s in formats())
    raise WeightsError(f"no known checkpoint format in {p} (it holds: {listing}); known formats: {known}")


def read_config(path: str | Path) -> LlamaConfig:
    """The architecture a checkpoint directory declares (HF config.json, Meta params.json, zoo config.json)."""
    spec = detect_format(path)
    cfg = spec.read_config(Path(path)) if spec.read_config is not None else None
    if cfg is None:
        raise WeightsError(f"{path}: the {spec.name} checkpoint declares no architecture (no config file)")
    return cfg


def load_state_dict(path: str | Path, config: LlamaConfig | None = None, *, format: str | None = None,
                    dtype: str | None = None, check: bool = True) -> tuple[dict[str, Any], LlamaConfig]:
    """Canonical state dict and config of a checkpoint directory, checked against the architecture."""
    p = Path(path)
    spec = get_format(format) if format else detect_format(p)
    if spec.load is None:
        raise UsageError(f"checkpoint format {spec.name!r} cannot be read")
    if config is None:
        config = spec.read_config(p) if spec.read_config is not None else None
        if config is None:
            raise WeightsError(f"{p}: no config file; pass the architecture (a model name) to load it")
    if dtype is not None and "dtype" in inspect.signature(spec.load).parameters:
        sd = spec.load(p, config=config, dtype=dtype)  # the format casts while reading (lower peak memory)
    else:
        sd = spec.load(p, config=config)
    if check:
        check_state_dict(sd, config, str(p))
    return cast_state_dict(sd, dtype), config


def save_checkpoint(state_dict: dict[str, Any], config: LlamaConfig, path: str | Path, format: str, *,
                    overwrite: bool = False, progress: Progress = None, side_files_from: str | Path | None = None,
                    **options: Any) -> Path:
    """Write a checkpoint atomically: into a temporary directory beside ``path``, then rename."""
    spec = get_format(format)
    if spec.save is None:
        raise UsageError(f"checkpoint format {format!r} cannot be written")
    dst = Path(path)
    if dst.exists() and not (dst.is_dir() and not any(dst.iterdir())) and not overwrite:
        raise UsageError(f"{dst} already exists and is not empty; pass --overwrite to replace it")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        spec.save(state_dict, config, tmp, progress=progress, **options)
        if side_files_from is not None:
            for name in SIDE_FILES:
                src = Path(side_files_from) / name
                if src.is_file() and not (tmp / name).exists():
                    shutil.copy2(src, tmp / name)
        if dst.exists():
            old = dst.parent / f".{dst.name}.old-{os.getpid()}"
            os.replace(dst, old)
            os.replace(tmp, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def iter_nbytes(state_dict: dict[str, Any]) -> Iterator[int]:
    for t in state_dict.values():
        yield t.numel() * t.element_size()


def convert(src: str | Path, dst: str | Path, to: str, *, dtype: str | None = None, overwrite: bool = False,
            config: LlamaConfig | None = None, quiet: bool = False, **options: Any) -> Path:
    """Read ``src`` (any detected format), write ``dst`` in format ``to``; tensors bit-exact unless ``dtype``."""
    from tqdm import tqdm

    sd, cfg = load_state_dict(src, config, dtype=dtype)
    total = sum(iter_nbytes(sd))
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"writing {to}", disable=True if quiet else None) as bar:
        return save_checkpoint(sd, cfg, dst, to, overwrite=overwrite, progress=bar.update, side_files_from=src,
                               **options)
