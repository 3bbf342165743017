"""Builds Code Llama's 32,016-piece tokenizer from the real Llama 2 model.

Code Llama 7B/13B append 16 pieces to Llama 2's 32,000 (ids 32000-32015;
../shared/assets/README.md); 70B Instruct also carries ``<step>``. Tests that
need those layouts build them here from the shared asset, once per session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CODELLAMA_EXTRA_PIECES = (
    "▁<SU", "▁<SUF", "▁<PRE", "▁<M", "▁<MID", "▁<E", "▁<EOT",
    "▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>",
    *("▁<EOT>" * n for n in range(2, 7)),
)  # fmt: skip


def build_codellama_model(llama2_model: Path, dst: Path, step: bool = False) -> Path:
    """Write a Code Llama tokenizer.model (with ``<step>`` last when ``step``)."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString(llama2_model.read_bytes())
    pieces = list(CODELLAMA_EXTRA_PIECES)
    if step:
        pieces[-1] = "<step>"
    for text in pieces:
        piece = proto.pieces.add()
        piece.piece = text
        piece.score = 0.0
        piece.type = pb.ModelProto.SentencePiece.NORMAL
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(proto.SerializeToString())
    return dst


_built: dict[tuple[Path, bool], Path] = {}


def _cached(llama2_model: Path, factory: pytest.TempPathFactory, step: bool) -> Path:
    key = (llama2_model, step)
    if key not in _built:
        _built[key] = build_codellama_model(llama2_model, factory.mktemp("codellama-vocab") / "tokenizer.model", step)
    return _built[key]


@pytest.fixture
def codellama_tokenizer_model(llama2_tokenizer_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 32,016-piece Code Llama 7B/13B tokenizer.model (skips without the asset)."""
    return _cached(llama2_tokenizer_model, tmp_path_factory, step=False)


@pytest.fixture
def codellama70b_tokenizer_model(llama2_tokenizer_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same layout with ``<step>`` as its last piece, as 70B Instruct uses."""
    return _cached(llama2_tokenizer_model, tmp_path_factory, step=True)
