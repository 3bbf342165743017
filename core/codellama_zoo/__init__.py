"""codellama-zoo: a plugin-based model zoo for the Code Llama family.

The core knows no model, runtime or dataset; plugins register them through
the hooks in :mod:`codellama_zoo.hookspecs`.
"""

from __future__ import annotations

from codellama_zoo.api import get_model_spec, load, models, pipeline
from codellama_zoo.errors import (
    BackendUnavailableError,
    CapabilityError,
    ConfigError,
    DuplicateRegistrationError,
    PluginError,
    UnknownModelError,
    UnknownNameError,
    UsageError,
    WeightsError,
    ZooError,
)
from codellama_zoo.hookspecs import hookimpl
from codellama_zoo.specs import (
    AttentionSpec,
    BackendSpec,
    CheckpointFormatSpec,
    DatasetSpec,
    EvaluationSpec,
    GeneratorSpec,
    LlamaConfig,
    ModelSpec,
    ParallelStrategySpec,
    PromptFormatSpec,
    TokenizerSpec,
)

__all__ = [
    "AttentionSpec",
    "BackendSpec",
    "BackendUnavailableError",
    "CapabilityError",
    "CheckpointFormatSpec",
    "ConfigError",
    "DatasetSpec",
    "DuplicateRegistrationError",
    "EvaluationSpec",
    "GeneratorSpec",
    "LlamaConfig",
    "ModelSpec",
    "ParallelStrategySpec",
    "PluginError",
    "PromptFormatSpec",
    "TokenizerSpec",
    "UnknownModelError",
    "UnknownNameError",
    "UsageError",
    "WeightsError",
    "ZooError",
    "get_model_spec",
    "hookimpl",
    "load",
    "models",
    "pipeline",
]
