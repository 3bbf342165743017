"""A loaded model: completion, chat and infilling over any backend.

Prompts are built by the registered prompt formats, decoding is done by the
registered generators, and the network is any
:class:`codellama_zoo.runtime.LanguageModel`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs

from codellama_zoo.config import GenerateConfig, structure
from codellama_zoo.errors import UsageError, WeightsError
from codellama_zoo.loading import require_capability
from codellama_zoo.registry import get_registry

Messages = Sequence[Mapping[str, str]]


class Model:
    """What :func:`codellama_zoo.load` returns."""

    def __init__(
        self,
        lm: Any,
        tokenizer: Any,
        *,
        name: str,
        capabilities: frozenset[str],
        chat_format: str | None = "codellama-instruct",
        infill_formats: tuple[str, ...] = (),
        generate_config: GenerateConfig | None = None,
    ) -> None:
        self.lm = lm
        self.tokenizer = tokenizer
        self.name = name
        self.capabilities = capabilities
        self.chat_format = chat_format
        self.infill_formats = infill_formats
        self.generate_config = generate_config or GenerateConfig()

    def __repr__(self) -> str:
        lm = self.lm
        where = f"{getattr(lm, 'backend', '?')}, {getattr(lm, 'device', '?')}, {getattr(lm, 'dtype', '?')}"
        return f"<codellama_zoo.Model {self.name} ({where})>"

    # -- settings ----------------------------------------------------------
    def settings(self, **overrides: Any) -> GenerateConfig:
        """The generation config with per-call overrides (``temperature=0.2``, ``stop=[...]``), validated."""
        if isinstance(overrides.get("stop"), str):
            overrides["stop"] = (overrides["stop"],)
        if not overrides:
            return self.generate_config
        return structure({**attrs.asdict(self.generate_config), **overrides}, GenerateConfig, source="generation options")

    def decoder(self, config: GenerateConfig) -> Any:
        name = config.generator
        if name == "auto":
            name = "greedy" if config.temperature == 0 else "sample"
        spec = get_registry().generators.get(name)
        if spec.factory is None:
            raise UsageError(f"generator {name!r} has no implementation")
        return spec.factory(config)

    def _format(self, name: str) -> Any:
        spec = get_registry().prompt_formats.get(name)
        stop_ids = []
        for piece in spec.stop_tokens:
            token = self.tokenizer.piece_to_id(piece)
            if token is None:
                raise WeightsError(f"prompt format {name!r} stops at {piece!r}, which this tokenizer lacks")
            stop_ids.append(token)
        return spec, stop_ids

    # -- completion --------------------------------------------------------
    def encode_completion(self, prompt: str) -> list[int]:
        spec, _ = self._format("completion")
        return list(spec.build(self.tokenizer, prompt))

    def generate(self, prompts: str | Sequence[str], **options: Any) -> Any:
        """Complete one prompt (returns a string) or a list of them in one batch (returns a list)."""
        single = isinstance(prompts, str)
        batch: list[str] = [prompts] if isinstance(prompts, str) else list(prompts)
        if not batch:
            return []
        config = self.settings(**options)
        results = self.decoder(config).generate(self.lm, self.tokenizer, [self.encode_completion(p) for p in batch])
        texts = [r.text for r in results]
        return texts[0] if single else texts

    def complete(self, prompt: str, **options: Any) -> str:
        """The continuation of ``prompt``."""
        return str(self.generate(prompt, **options))

    def stream(self, prompt: str, **options: Any) -> Iterator[str]:
        """The continuation of ``prompt``, piece by piece as tokens are generated."""
        config = self.settings(**options)
        return self.decoder(config).stream(self.lm, self.tokenizer, self.encode_completion(prompt))

    # -- chat --------------------------------------------------------------
    def encode_chat(self, messages: Messages) -> tuple[list[int], list[int]]:
        if self.chat_format is None:
            require_capability(self.name, self.capabilities, "chat")
        spec, stop_ids = self._format(self.chat_format or "codellama-instruct")
        return list(spec.build(self.tokenizer, messages)), stop_ids

    def chat(self, messages: Messages, *, stream: bool = False, **options: Any) -> Any:
        """The assistant's reply to ``[{"role": "system"|"user"|"assistant", "content": ...}, ...]``."""
        require_capability(self.name, self.capabilities, "chat")
        ids, stop_ids = self.encode_chat(messages)
        decoder = self.decoder(self.settings(**options))
        if stream:
            return decoder.stream(self.lm, self.tokenizer, ids, stop_ids=stop_ids, strip_leading_space=True)
        result = decoder.generate(self.lm, self.tokenizer, [ids], stop_ids=stop_ids, strip_leading_space=True)[0]
        return result.text

    # -- infilling ---------------------------------------------------------
    def encode_infill(self, prefix: str, suffix: str, suffix_first: bool = False) -> tuple[list[int], list[int]]:
        require_capability(self.name, self.capabilities, "infill")
        wanted = "infill-spm" if suffix_first else "infill-psm"
        if wanted not in self.infill_formats:
            raise UsageError(f"{self.name} does not support {wanted}; it supports {', '.join(self.infill_formats)}")
        spec, stop_ids = self._format(wanted)
        return list(spec.build(self.tokenizer, prefix, suffix)), stop_ids

    def infill(self, prefix: str, suffix: str, *, suffix_first: bool = False, stream: bool = False, **options: Any) -> Any:
        """The code that goes between ``prefix`` and ``suffix``; generation ends at ``<EOT>``."""
        ids, stop_ids = self.encode_infill(prefix, suffix, suffix_first)
        decoder = self.decoder(self.settings(**options))
        if stream:
            return decoder.stream(self.lm, self.tokenizer, ids, stop_ids=stop_ids)
        return decoder.generate(self.lm, self.tokenizer, [ids], stop_ids=stop_ids)[0].text
