"""PSM/SPM prompts against Meta's layout, spelled out with the sentencepiece library."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import sentencepiece

from codellama_zoo.errors import UsageError, WeightsError
from codellama_zoo.registry import get_registry
from zoo_infill.prompts import build_psm, build_spm, split_fill_marker
from zoo_sentencepiece.tokenizer import SentencePieceTokenizer

CASES = [
    ("def add(a, b):\n    ", "\n    return c\n"),
    ('def remove_non_ascii(s: str) -> str:\n    """ ', "\n    return result\n"),
    ("x = [", "]  # 日本語 ☺ 🦙"),
    ("", "tail only"),
    ("head only", ""),
    ("\tindented\t", "  two spaces"),
]


def meta_layout(sp: sentencepiece.SentencePieceProcessor, prefix: str, suffix: str, spm: bool) -> list[int]:
    """generation.py infilling_prompt_tokens with Tokenizer.encode_infilling inlined."""
    pre, suf, mid = (sp.piece_to_id(p) for p in ("▁<PRE>", "▁<SUF>", "▁<MID>"))
    suffix_ids = sp.encode("☺" + suffix)[2:]
    if spm:
        return [sp.bos_id(), pre, suf, *suffix_ids, mid, *sp.encode(prefix)]
    return [sp.bos_id(), pre, *sp.encode(prefix), suf, *suffix_ids, mid]


@pytest.mark.parametrize(("prefix", "suffix"), CASES)
def test_psm_and_spm_match_meta(codellama_tokenizer_model: Path, prefix: str, suffix: str) -> None:
    sp = sentencepiece.SentencePieceProcessor(model_file=str(codellama_tokenizer_model))
    tok = SentencePieceTokenizer(codellama_tokenizer_model)
    psm = build_psm(tok, prefix, suffix)
    assert psm == meta_layout(sp, prefix, suffix, spm=False)
    assert psm[:2] == [1, 32007] and psm[-1] == 32009
    assert build_spm(tok, prefix, suffix) == meta_layout(sp, prefix, suffix, spm=True)


def test_suffix_has_no_leading_space(codellama_tokenizer_model: Path) -> None:
    tok = SentencePieceTokenizer(codellama_tokenizer_model)
    ids = build_psm(tok, "a = ", "b")
    after_suf = ids[ids.index(32008) + 1 : -1]
    assert [tok.id_to_piece(i) for i in after_suf] == ["b"]


def test_without_infill_pieces_is_an_error(llama2_tokenizer_model: Path) -> None:
    with pytest.raises(WeightsError, match="PRE"):
        build_psm(SentencePieceTokenizer(llama2_tokenizer_model), "a", "b")


def test_fill_marker_split() -> None:
    assert split_fill_marker("def f():\n    <FILL_ME>\n    return x") == ("def f():\n    ", "\n    return x")
    with pytest.raises(UsageError, match="exactly one"):
        split_fill_marker("no marker")
    with pytest.raises(UsageError, match="found 2"):
        split_fill_marker("<FILL_ME> and <FILL_ME>")


def test_registered_with_eot_stop() -> None:
    formats = get_registry().prompt_formats
    for name in ("infill-psm", "infill-spm"):
        spec = formats.get(name)
        assert spec.kind == "infill" and spec.stop_tokens == ("▁<EOT>",)


def test_humaneval_infilling_problems_match_meta(codellama_tokenizer_model: Path, llama2_tokenizer_model: Path) -> None:
    """Real benchmark prompts and suffixes (HumanEval-SingleLineInfilling), every 10th problem."""
    data = llama2_tokenizer_model.parents[1] / "humaneval-infilling" / "HumanEval-SingleLineInfilling.jsonl.gz"
    if not data.exists():
        pytest.skip(f"shared asset {data} not found")
    with gzip.open(data, "rt", encoding="utf-8") as f:
        problems = [json.loads(line) for line in f][::10]
    sp = sentencepiece.SentencePieceProcessor(model_file=str(codellama_tokenizer_model))
    tok = SentencePieceTokenizer(codellama_tokenizer_model)
    for problem in problems:
        prefix, suffix = problem["prompt"], problem["suffix"]
        assert build_psm(tok, prefix, suffix) == meta_layout(sp, prefix, suffix, spm=False), problem["task_id"]
        assert build_spm(tok, prefix, suffix) == meta_layout(sp, prefix, suffix, spm=True), problem["task_id"]
