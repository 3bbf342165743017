"""Train a SentencePiece tokenizer with Code Llama's special layout on source code.

The layout matches what the rest of the project expects from a Code Llama
``tokenizer.model``: ``<unk>``/``<s>``/``</s>`` at ids 0/1/2 (no pad piece),
and the infilling pieces ``▁<PRE>`` ``▁<SUF>`` ``▁<MID>`` ``▁<EOT>`` as
*control* pieces, so plain text can never produce them and prompts insert
them by id (looked up by piece name, not by Code Llama's fixed ids 32007+).

Code needs different settings than prose: no Unicode normalisation and no
whitespace collapsing (indentation is syntax), runs of spaces may become one
piece, digits are split, and byte fallback makes every string round-trip.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from codellama_zoo.errors import UsageError

CONTROL_PIECES = ("▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>")
# One piece for the marker character the tokenizer prepends to strip
# SentencePiece's implicit leading space (as in the Llama vocabulary).
MARKER_PIECE = "☺"
MODEL_TYPES = ("bpe", "unigram")
DEFAULT_EXTENSIONS = (".py",)
_SKIP_DIRS = frozenset({"__pycache__", ".git", ".hg", ".svn", "node_modules", ".venv", "site-packages"})
# SentencePiece drops longer "sentences"; chunks of a file stay below it.
MAX_SENTENCE_BYTES = 4096
MIN_VOCAB = 300  # control pieces + 256 byte pieces + a few merges


@attrs.frozen(kw_only=True)
class TokenizerTrainResult:
    """What a training run produced, for the CLI and the model card."""

    output: Path
    vocab_size: int
    files: int
    sentences: int
    characters: int
    sha256: str
    pieces_per_char: float  # measured on (a sample of) the training text

    def summary(self) -> str:
        return (
            f"wrote {self.output} ({self.vocab_size} pieces) from {self.files} files, "
            f"{self.sentences} chunks, {self.characters:,} characters; "
            f"{1 / self.pieces_per_char:.2f} characters per piece; sha256 {self.sha256[:12]}"
        )


def collect_files(inputs: Sequence[str | Path], extensions: Sequence[str] = DEFAULT_EXTENSIONS) -> list[Path]:
    """Files named in ``inputs`` plus source files under the directories there, sorted."""
    exts = tuple(e if e.startswith(".") else f".{e}" for e in extensions)
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            for directory, subdirs, names in os.walk(path):
                subdirs[:] = sorted(d for d in subdirs if d not in _SKIP_DIRS)
                files.extend(Path(directory) / n for n in sorted(names) if n.endswith(exts))
        else:
            raise UsageError(f"tokenizer input {str(path)!r} does not exist; pass source files or directories")
    if not files:
        raise UsageError(
            f"no files with extensions {', '.join(exts)} under {', '.join(str(i) for i in inputs)}; "
            "pass directories of source code or change --extensions"
        )
    return sorted(set(files))


def chunk_text(text: str, max_bytes: int = MAX_SENTENCE_BYTES) -> Iterator[str]:
    """Consecutive whole lines of ``text``, each chunk under ``max_bytes`` UTF-8 bytes.

    Newlines stay inside the chunks so pieces can learn ``):\\n`` and the like;
    a single over-long line is cut (rare in code, e.g. embedded data).
    """
    chunk: list[str] = []
    size = 0
    for line in text.splitlines(keepends=True):
        n = len(line.encode("utf-8"))
        if n > max_bytes:
            line = line.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")
            n = len(line.encode("utf-8"))
        if size + n > max_bytes and chunk:
            yield "".join(chunk)
            chunk, size = [], 0
        chunk.append(line)
        size += n
    if chunk and "".join(chunk).strip():
        yield "".join(chunk)


def read_chunks(files: Iterable[Path], max_bytes: int = MAX_SENTENCE_BYTES) -> Iterator[str]:
    """Chunks of every readable UTF-8 file; unreadable files are skipped."""
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        yield from chunk_text(text, max_bytes)


def trainer_options(vocab_size: int, model_type: str, seed_sentences: int, threads: int) -> dict[str, Any]:
    """SentencePiece options: Llama's special ids plus code-friendly whitespace handling."""
    return {
        "vocab_size": vocab_size,
        "model_type": model_type,
        "unk_id": 0,
        "bos_id": 1,
        "eos_id": 2,
        "pad_id": -1,
        "control_symbols": list(CONTROL_PIECES),
        "user_defined_symbols": [MARKER_PIECE],
        "byte_fallback": True,
        "character_coverage": 0.9999,
        "normalization_rule_name": "identity",
        "remove_extra_whitespaces": False,
        "add_dummy_prefix": True,
        "split_digits": True,
        "allow_whitespace_only_pieces": True,
        "split_by_whitespace": True,
        "max_sentence_length": MAX_SENTENCE_BYTES + 16,
        "input_sentence_size": seed_sentences,
        "shuffle_input_sentence": True,
        "num_threads": threads,
        "minloglevel": 2,
    }


def train_tokenizer(
    inputs: Sequence[str | Path],
    output: str | Path,
    vocab_size: int,
    *,
    model_type: str = "bpe",
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    max_sentences: int = 200_000,
    seed: int = 0,
    threads: int = 2,
) -> TokenizerTrainResult:
    """Train on the source files in ``inputs`` and write ``output`` (a ``tokenizer.model``).

    The same files, options and seed give a byte-identical model: chunks are
    read in sorted file order and SentencePiece's sampling is seeded.
    """
    import sentencepiece as spm

    if model_type not in MODEL_TYPES:
        raise UsageError(f"unknown tokenizer model type {model_type!r}; allowed: {', '.join(MODEL_TYPES)}")
    if vocab_size < MIN_VOCAB:
        raise UsageError(
            f"vocab size {vocab_size} is too small: the 256 byte pieces and {len(CONTROL_PIECES) + 4} special "
            f"pieces alone need most of it; use at least {MIN_VOCAB} (a few thousand for code)"
        )
    if max_sentences <= 0:
        raise UsageError(f"max_sentences must be positive, got {max_sentences}")
    files = collect_files(inputs, extensions)
    chunks = list(read_chunks(files))
    if not chunks:
        raise UsageError(f"the {len(files)} input files hold no UTF-8 text to train a tokenizer on")
    random.Random(seed).shuffle(chunks)  # SentencePiece samples the first lines it sees; shuffle them ourselves
    chunks = chunks[:max_sentences]
    spm.set_random_generator_seed(seed)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(chunks),
            model_writer=model,
            **trainer_options(vocab_size, model_type, max_sentences, threads),
        )
    except RuntimeError as exc:
        raise UsageError(f"SentencePiece could not train a {vocab_size}-piece {model_type} model: {exc}") from None
    data = model.getvalue()
    out = Path(output)
    if out.is_dir():
        out = out / "tokenizer.model"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    processor = spm.SentencePieceProcessor(model_proto=data)
    sample = chunks[: min(len(chunks), 2000)]
    pieces = sum(len(ids) for ids in processor.encode(sample))
    characters = sum(len(c) for c in chunks)
    return TokenizerTrainResult(
        output=out,
        vocab_size=processor.vocab_size(),
        files=len(files),
        sentences=len(chunks),
        characters=characters,
        sha256=hashlib.sha256(data).hexdigest(),
        pieces_per_char=pieces / max(1, sum(len(c) for c in sample)),
    )
