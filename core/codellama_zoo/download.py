"""Fetching a variant's published files from the Hugging Face Hub into ``$ZOO_HOME``."""

from __future__ import annotations

from pathlib import Path

from codellama_zoo.errors import BackendUnavailableError, UsageError, WeightsError
from codellama_zoo.loading import default_weights_dir
from codellama_zoo.registry import get_registry

# Weights, configs and the SentencePiece model; not the duplicate .bin/.pth copies.
ALLOW_PATTERNS = ("*.safetensors", "*.json", "tokenizer.model")


def download(name: str, dest: str | Path | None = None, revision: str | None = None, token: str | None = None) -> Path:
    """Download ``name``'s Hugging Face repository to ``dest`` (default ``$ZOO_HOME/<model>``)."""
    spec = get_registry().model(name)
    if not spec.hf_repo:
        raise UsageError(f"{spec.name} has no Hugging Face repository to download from; convert local weights with `zoo convert`")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise BackendUnavailableError(
            "downloading needs huggingface_hub: pip install 'codellama-zoo[hub]'"
        ) from None
    target = Path(dest).expanduser() if dest is not None else default_weights_dir(spec)
    target.mkdir(parents=True, exist_ok=True)
    try:
        path = snapshot_download(
            repo_id=spec.hf_repo,
            revision=revision,
            local_dir=str(target),
            allow_patterns=list(ALLOW_PATTERNS),
            token=token,
        )
    except Exception as exc:  # the hub client raises many kinds: network, auth, not found
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"could not download {spec.hf_repo} to {target}: {message} (Code Llama repos need an accepted licence "
            "and `huggingface-cli login` or --token)"
        ) from None
    return Path(path)
