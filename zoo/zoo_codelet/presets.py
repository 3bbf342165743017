"""The codelet architecture, names and where the shipped weights live."""

from __future__ import annotations

from pathlib import Path

from codellama_zoo.errors import WeightsError
from codellama_zoo.specs import LlamaConfig

FAMILY = "codelet"
SIZE = "5m"
BASE_NAME = f"zoo-codelet-{SIZE}"
INSTRUCT_NAME = f"{BASE_NAME}-instruct"
DEFAULT_MODEL = BASE_NAME  # what `zoo run` loads when no model is named
SEQ_LENGTH = 512  # training sequence length = context length

# Code Llama's architecture (RMSNorm, SwiGLU, RoPE theta 1e6, grouped-query
# attention with 4 query heads per kv head, as 34B/70B) scaled down to what
# two shared CPU cores can train in half an hour.
CODELET_CONFIG = LlamaConfig(
    dim=256,
    n_layers=4,
    n_heads=8,
    n_kv_heads=2,
    vocab_size=4096,
    multiple_of=64,
    norm_eps=1e-5,
    rope_theta=1_000_000.0,
    max_seq_len=SEQ_LENGTH,
)

PACKAGE_DIR = Path(__file__).resolve().parent
WEIGHTS_ROOT = PACKAGE_DIR / "weights"
CONFIGS_DIR = PACKAGE_DIR / "configs"
WEIGHT_FILES = ("config.json", "model.safetensors", "tokenizer.model")


def weights_dir(name: str) -> Path:
    """The package-data folder holding ``name``'s checkpoint (zoo layout) and tokenizer."""
    return WEIGHTS_ROOT / name


def shipped_weights(name: str) -> Path:
    """``weights_dir(name)`` if it holds a complete checkpoint, else a clear error."""
    path = weights_dir(name)
    missing = [f for f in WEIGHT_FILES if not (path / f).is_file()]
    if missing:
        raise WeightsError(
            f"{name}'s shipped weights are incomplete in {path} (missing {', '.join(missing)}); "
            "rebuild them with `make default-model` (or `zoo codelet build`), or reinstall codellama-zoo"
        )
    return path
