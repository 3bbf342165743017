"""A thin wrapper over ``sentencepiece`` that knows Code Llama's special pieces.

Plain text is encoded by the ``sentencepiece`` library itself, so ids are
exactly what the checkpoint's ``tokenizer.model`` gives. The infill pieces
(``▁<PRE>``, ``▁<SUF>``, ``▁<MID>``, ``▁<EOT>``) and 70B's ``<step>`` are only
ever inserted by id when prompts are built, and dropped when decoding.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from codellama_zoo.errors import WeightsError

# Pieces that Code Llama appends to the Llama 2 vocabulary.
PREFIX_PIECE = "▁<PRE>"
SUFFIX_PIECE = "▁<SUF>"
MIDDLE_PIECE = "▁<MID>"
EOT_PIECE = "▁<EOT>"
STEP_PIECE = "<step>"
LLAMA2_VOCAB = 32000  # pieces past this id are Code Llama additions
# "▁<SU", "▁<PRE>", "▁<EOT>▁<EOT>", ...: the additions' shapes; none is ever text.
_ADDED_PIECE = re.compile(r"^(▁<[A-Z]+>?)+$")
# A character that is one piece in the Llama vocabulary; encoding it before a
# text and dropping its pieces removes SentencePiece's implicit leading space.
_MARKER = "☺"


class SentencePieceTokenizer:
    """Encode/decode with BOS/EOS handling and Code Llama's special ids."""

    def __init__(self, model_file: str | Path) -> None:
        import sentencepiece

        path = Path(model_file)
        if not path.is_file():
            raise WeightsError(f"tokenizer file {str(path)!r} does not exist; a checkpoint needs its tokenizer.model")
        try:
            self.sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
        except (OSError, RuntimeError) as exc:
            raise WeightsError(f"cannot read SentencePiece model {str(path)!r}: {exc}") from None
        self.path = path
        self.vocab_size: int = self.sp.vocab_size()
        self.bos_id: int = self.sp.bos_id()
        self.eos_id: int = self.sp.eos_id()
        # Llama's model has no pad piece (-1); padding is masked, any id works.
        self.pad_id: int = self.sp.pad_id() if self.sp.pad_id() >= 0 else self.eos_id
        self.prefix_id = self._optional_id(PREFIX_PIECE)
        self.suffix_id = self._optional_id(SUFFIX_PIECE)
        self.middle_id = self._optional_id(MIDDLE_PIECE)
        self.eot_id = self._optional_id(EOT_PIECE)
        self.step_id = self._optional_id(STEP_PIECE)
        self.special_ids: frozenset[int] = frozenset(self._special_ids())
        marker = self.sp.encode(_MARKER)
        self._marker_len = len(marker)
        # Decoding needs the marker without its leading "▁" piece.
        space = self.sp.piece_to_id("▁")
        self._marker_ids = marker[1:] if marker and marker[0] == space else marker

    def _optional_id(self, piece: str) -> int | None:
        pid = self.sp.piece_to_id(piece)
        return None if pid == self.sp.unk_id() or self.sp.id_to_piece(pid) != piece else pid

    def _special_ids(self) -> Iterable[int]:
        yield from (i for i in (self.bos_id, self.eos_id, self.step_id) if i is not None and i >= 0)
        for i in range(LLAMA2_VOCAB, self.vocab_size):
            if _ADDED_PIECE.match(self.sp.id_to_piece(i)) or self.sp.is_control(i):
                yield i
        yield from (i for i in range(min(self.vocab_size, LLAMA2_VOCAB)) if self.sp.is_control(i))

    @property
    def can_infill(self) -> bool:
        return None not in (self.prefix_id, self.suffix_id, self.middle_id, self.eot_id)

    def require(self, name: str) -> int:
        """The id of a special piece (``prefix``, ``suffix``, ``middle``, ``eot``, ``step``), or a clear error."""
        value = getattr(self, f"{name}_id", None)
        if value is None:
            piece = {"prefix": PREFIX_PIECE, "suffix": SUFFIX_PIECE, "middle": MIDDLE_PIECE, "eot": EOT_PIECE}.get(
                name, STEP_PIECE
            )
            raise WeightsError(
                f"tokenizer {str(self.path)!r} has no {piece!r} piece ({self.vocab_size} pieces); "
                "this checkpoint was not trained for that prompt format"
            )
        return value

    def piece_to_id(self, piece: str) -> int | None:
        return self._optional_id(piece)

    def id_to_piece(self, token_id: int) -> str:
        return self.sp.id_to_piece(token_id)

    # -- encoding -----------------------------------------------------------
    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        """``text`` as the sentencepiece library encodes it, with optional BOS/EOS."""
        ids: list[int] = self.sp.encode(text)
        if bos:
            ids = [self.bos_id, *ids]
        if eos:
            ids = [*ids, self.eos_id]
        return ids

    def encode_nospace(self, text: str) -> list[int]:
        """``text`` without SentencePiece's implicit leading space (infill suffixes)."""
        return list(self.sp.encode(_MARKER + text)[self._marker_len :])

    # -- decoding -----------------------------------------------------------
    def _visible(self, ids: Iterable[int]) -> list[int]:
        return [int(i) for i in ids if 0 <= int(i) < self.vocab_size and int(i) not in self.special_ids]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` with special pieces dropped, leading space removed as usual."""
        return str(self.sp.decode(self._visible(ids)))

    def decode_nospace(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` keeping a leading space (continuations, infill middles)."""
        visible = self._visible(ids)
        if not visible:
            return ""
        text = str(self.sp.decode([*self._marker_ids, *visible]))
        return text[len(_MARKER) :] if text.startswith(_MARKER) else text

    def stream_decoder(self, strip_leading_space: bool = False) -> StreamDecoder:
        return StreamDecoder(self, strip_leading_space)


class StreamDecoder:
    """Turns ids arriving one by one into text pieces.

    Ids are held back while they end inside a multi-byte character (their text
    ends in U+FFFD), so a piece is never half an emoji; spaces come from the
    pieces' "▁" exactly as a full decode would give them.
    """

    # A real U+FFFD in the output must not stall the stream forever.
    MAX_PENDING = 8

    def __init__(self, tokenizer: SentencePieceTokenizer, strip_leading_space: bool = False) -> None:
        self.tokenizer = tokenizer
        self.pending: list[int] = []
        self.strip_leading_space = strip_leading_space
        self.text = ""

    def push(self, token_id: int) -> str:
        """Add one id; return the text it completes (possibly empty)."""
        if token_id in self.tokenizer.special_ids:
            return ""
        self.pending.append(int(token_id))
        piece = self.tokenizer.decode_nospace(self.pending)
        if piece.endswith("\ufffd") and len(self.pending) < self.MAX_PENDING:
            return ""
        return self._emit(piece)

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character at the end)."""
        return self._emit(self.tokenizer.decode_nospace(self.pending)) if self.pending else ""

    def _emit(self, piece: str) -> str:
        self.pending.clear()
        if not self.text and self.strip_leading_space and piece.startswith(" "):
            piece = piece[1:]
        self.text += piece
        return piece
