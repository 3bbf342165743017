"""The library API: what ``import codellama_zoo`` offers besides the CLI."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codellama_zoo.errors import UsageError
from codellama_zoo.registry import get_registry
from codellama_zoo.specs import ModelSpec

if TYPE_CHECKING:
    from codellama_zoo.config import GenerateConfig
    from codellama_zoo.inference import Model


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


def load(
    name: str | None = None,
    *,
    weights: str | Path | None = None,
    backend: str = "auto",
    device: str = "auto",
    dtype: str = "auto",
    attention: str = "auto",
    generate_config: GenerateConfig | None = None,
) -> Model:
    """Load a model by name (weights from ``$ZOO_HOME/<name>``) or any Llama checkpoint folder.

    >>> model = codellama_zoo.load("codellama-7b-instruct")          # doctest: +SKIP
    >>> model.chat([{"role": "user", "content": "Reverse a list in Python"}])  # doctest: +SKIP
    """
    from codellama_zoo.inference import Model
    from codellama_zoo.loading import load_language_model, place, plan

    if name is None and weights is None:
        raise UsageError("load() needs a model name (see codellama_zoo.models()) or weights=DIR")
    p = plan(name, weights)
    where = place(backend, device, dtype, attention)
    lm = load_language_model(p, where)
    return Model(
        lm,
        p.tokenizer,
        name=p.name,
        capabilities=p.capabilities,
        chat_format=p.chat_format,
        infill_formats=p.infill_formats,
        generate_config=generate_config,
    )


TASKS = ("text_generation", "text-generation")


class TextGenerationPipeline:
    """Batch completion of a list of prompts, MindFormers-pipeline style."""

    def __init__(self, model: Model, **defaults: Any) -> None:
        self.model = model
        self.defaults = defaults

    def __call__(self, prompts: str | Sequence[str], **options: Any) -> list[dict[str, Any]]:
        batch = [prompts] if isinstance(prompts, str) else list(prompts)
        settings = _pipeline_options({**self.defaults, **options}, self.model, batch)
        texts = self.model.generate(batch, **settings)
        return [
            {"prompt": p, "generated_text": t, "text_generation_text": [p + t]}
            for p, t in zip(batch, texts, strict=True)
        ]


def _pipeline_options(options: dict[str, Any], model: Model, batch: list[str]) -> dict[str, Any]:
    """Accept MindFormers' ``do_sample`` and ``max_length`` next to our own knobs."""
    out = dict(options)
    do_sample = out.pop("do_sample", None)
    if do_sample is False:
        out["temperature"] = 0.0
    elif do_sample is True and not out.get("temperature"):
        out["temperature"] = 0.8
    max_length = out.pop("max_length", None)
    if max_length is not None:
        longest = max((len(model.encode_completion(p)) for p in batch), default=0)
        out["max_new_tokens"] = max(0, int(max_length) - longest)
    return out


def pipeline(task: str, model: str | Model, **options: Any) -> TextGenerationPipeline:
    """A callable over lists of prompts: ``pipeline("text_generation", model="codellama-7b")(["def f(", ...])``.

    ``model`` is a name (loaded with :func:`load`, taking its ``weights``,
    ``backend``, ``device``, ``dtype`` from ``options``) or a loaded model; other
    options are generation defaults.
    """
    if task not in TASKS:
        raise UsageError(f"unknown pipeline task {task!r}; supported: {', '.join(TASKS)}")
    if isinstance(model, str):
        load_keys = ("weights", "backend", "device", "dtype", "attention")
        load_options = {k: options.pop(k) for k in load_keys if k in options}
        model = load(model, **load_options)
    return TextGenerationPipeline(model, **options)
