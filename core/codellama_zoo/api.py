"""The library API: what ``import codellama_zoo`` offers besides the CLI."""

from __future__ import annotations

from codellama_zoo.registry import get_registry
from codellama_zoo.specs import ModelSpec


def models(family: str | None = None, capability: str | None = None) -> list[ModelSpec]:
    """Every registered model, optionally only one family or capability."""
    return [
        spec
        for spec in get_registry().models
        if (family is None or spec.family == family) and (capability is None or spec.supports(capability))
    ]


def get_model_spec(name_or_alias: str) -> ModelSpec:
    """The spec for a model name, Hugging Face repo id or Ollama-style tag."""
    return get_registry().model(name_or_alias)
