"""The small tokenizer interface the preprocessors need, and how to get one.

Preprocessors only call ``encode(text)`` (no BOS/EOS added) and read the
special ids. ``load_tokenizer`` prefers the registered ``sentencepiece``
tokenizer plugin and falls back to wrapping the ``sentencepiece`` library
directly, so datasets can be prepared even when that plugin is absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from codellama_zoo.errors import ConfigError, UsageError

# Code Llama's infilling pieces, always addressed by id (see shared assets README).
CODELLAMA_FIM_IDS = {"prefix_id": 32007, "suffix_id": 32008, "middle_id": 32009, "eot_id": 32010}
_FIM_PIECES = {"prefix_id": "▁<PRE>", "suffix_id": "▁<SUF>", "middle_id": "▁<MID>", "eot_id": "▁<EOT>"}


@runtime_checkable
class TokenizerLike(Protocol):
    """What dataset preprocessors use; infill ids are ``None`` when absent."""

    bos_id: int
    eos_id: int
    pad_id: int

    def encode(self, text: str) -> list[int]: ...


def fim_ids(tokenizer: Any) -> dict[str, int] | None:
    """The four infilling ids of ``tokenizer``, or ``None`` if it cannot infill."""
    ids = {name: getattr(tokenizer, name, None) for name in CODELLAMA_FIM_IDS}
    if any(value is None or int(value) < 0 for value in ids.values()):
        return None
    return {name: int(value) for name, value in ids.items()}  # type: ignore[arg-type]


def encode_continuation(tokenizer: Any, text: str) -> list[int]:
    """Encode text that continues earlier text, without SentencePiece's leading space.

    Needed when a document is cut into pieces (FIM): each piece must not gain
    a spurious "▁" at its start.
    """
    for name in ("encode_infilling", "encode_nospace"):
        method = getattr(tokenizer, name, None)
        if callable(method):
            return list(method(text))
    return list(tokenizer.encode(text))


class SentencePieceTokenizer:
    """``sentencepiece`` wrapped in :class:`TokenizerLike`, with Code Llama infill ids."""

    def __init__(self, model_file: str | Path) -> None:
        import sentencepiece as spm

        path = Path(model_file)
        if path.is_dir():
            path = path / "tokenizer.model"
        if not path.is_file():
            raise ConfigError(
                f"tokenizer file {str(path)!r} does not exist; pass --tokenizer a tokenizer.model "
                "file or the weights directory that holds one"
            )
        try:
            self.sp = spm.SentencePieceProcessor(model_file=str(path))
        except (OSError, RuntimeError) as exc:
            raise ConfigError(f"{path}: not a SentencePiece model ({exc})") from None
        self.path = path
        self.bos_id = int(self.sp.bos_id())
        self.eos_id = int(self.sp.eos_id())
        pad = int(self.sp.pad_id())
        self.pad_id = pad if pad >= 0 else int(self.sp.unk_id())  # Llama has no pad piece; the seed pads with 0
        self.vocab_size = int(self.sp.vocab_size())
        for name, piece in _FIM_PIECES.items():
            pid = int(self.sp.piece_to_id(piece))
            setattr(self, name, pid if pid != self.sp.unk_id() else None)

    def encode(self, text: str) -> list[int]:
        return list(self.sp.encode(text))

    def encode_infilling(self, text: str) -> list[int]:
        # A leading sentinel absorbs the dummy-prefix space; drop "▁" and the sentinel.
        return list(self.sp.encode("☺" + text))[2:]

    def decode(self, ids: list[int]) -> str:
        return str(self.sp.decode(list(ids)))

    def describe(self) -> dict[str, Any]:
        return {"type": "sentencepiece", "path": str(Path(self.path).resolve()), "vocab_size": self.vocab_size}


class _RegistryTokenizer:
    """Adapts a tokenizer object from the registry to :class:`TokenizerLike`."""

    def __init__(self, inner: Any, path: Path) -> None:
        self.inner = inner
        self.path = path
        self.bos_id = int(_first_attr(inner, "bos_id", "bos_token_id"))
        self.eos_id = int(_first_attr(inner, "eos_id", "eos_token_id"))
        pad = _first_attr(inner, "pad_id", "pad_token_id", default=-1)
        self.pad_id = int(pad) if pad is not None and int(pad) >= 0 else 0
        self.vocab_size = int(_first_attr(inner, "vocab_size", "n_words", default=0))
        for name in CODELLAMA_FIM_IDS:
            value = getattr(inner, name, None)
            setattr(self, name, int(value) if value is not None and int(value) >= 0 else None)

    def encode(self, text: str) -> list[int]:
        try:
            return list(self.inner.encode(text, bos=False, eos=False))
        except TypeError:
            return list(self.inner.encode(text))

    def encode_infilling(self, text: str) -> list[int]:
        for name in ("encode_infilling", "encode_nospace"):
            method = getattr(self.inner, name, None)
            if callable(method):
                return list(method(text))
        return self.encode(text)

    def decode(self, ids: list[int]) -> str:
        return str(self.inner.decode(list(ids)))

    def describe(self) -> dict[str, Any]:
        return {"type": "sentencepiece", "path": str(Path(self.path).resolve()), "vocab_size": self.vocab_size}


def _first_attr(obj: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = getattr(obj, name, None)
        if callable(value):
            value = value()
        if value is not None:
            return value
    if default is None:
        raise UsageError(f"tokenizer {type(obj).__name__} has none of the attributes {', '.join(names)}")
    return default


def load_tokenizer(path: str | Path, name: str = "sentencepiece") -> Any:
    """A :class:`TokenizerLike` for ``path`` (a tokenizer.model or a weights directory)."""
    from codellama_zoo.registry import get_registry

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"tokenizer {str(p)!r} does not exist; pass a tokenizer.model file or a weights directory")
    tokenizers = get_registry().tokenizers
    loader = tokenizers.get(name).load if name in tokenizers else None
    if loader is not None:
        return _RegistryTokenizer(loader(p), p)
    return SentencePieceTokenizer(p)
