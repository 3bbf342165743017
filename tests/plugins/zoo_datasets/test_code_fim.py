"""Source trees as documents, and the fill-in-the-middle transform at token level."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np
import pytest

from codellama_zoo.errors import UsageError
from zoo_datasets.code import preprocess, read
from zoo_datasets.fim import fim_transform, split_document
from zoo_datasets.prepare import prepare
from zoo_datasets.storage import open_samples

STDLIB_JSON = Path(sysconfig.get_paths()["stdlib"]) / "json"


def test_reads_a_real_source_tree_in_sorted_order(tmp_path: Path) -> None:
    stats: dict = {}
    docs = list(read(STDLIB_JSON, stats=stats))
    files = sorted(STDLIB_JSON.rglob("*.py"))
    assert stats["files"] == len(files) == len(docs) > 3
    assert docs[0] == files[0].read_text(encoding="utf-8")


def test_skips_undecodable_and_empty_files(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_bytes("s = 'café'\n".encode("latin-1"))
    (tmp_path / "c.py").write_text("")
    (tmp_path / "d.txt").write_text("not code")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "e.py").write_text("y = 2\n")
    stats: dict = {}
    assert list(read(tmp_path, stats=stats)) == ["x = 1\n"]
    assert stats == {"files": 1, "skipped_files": 2}
    assert list(read(tmp_path, extensions="txt,py")) == ["x = 1\n", "not code"]


def test_split_document_covers_the_text() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        pre, mid, suf = split_document("def f(x):\n    return x\n", rng)
        assert pre + mid + suf == "def f(x):\n    return x\n"


@pytest.mark.parametrize("spm", [False, True])
def test_fim_layout_and_reconstruction(codellama_tok, spm: bool) -> None:
    tok = codellama_tok
    assert (tok.prefix_id, tok.suffix_id, tok.middle_id, tok.eot_id) == (32007, 32008, 32009, 32010)
    rng = np.random.default_rng(1)
    for text in list(read(STDLIB_JSON))[:4]:
        ids = fim_transform(tok, text, rng, spm=spm)
        assert ids[0] == tok.bos_id and ids[-2:] == [tok.eot_id, tok.eos_id]
        body = ids[1:-2]
        assert body.count(tok.prefix_id) == body.count(tok.suffix_id) == body.count(tok.middle_id) == 1
        p, s, m = body.index(tok.prefix_id), body.index(tok.suffix_id), body.index(tok.middle_id)
        if spm:  # <PRE> <SUF> suffix <MID> prefix middle
            assert (p, s) == (0, 1) and m > s
            suffix, prefix_middle = body[s + 1 : m], body[m + 1 :]
            rebuilt = tok.decode(prefix_middle + suffix)
        else:  # <PRE> prefix <SUF> suffix <MID> middle
            assert p == 0 and p < s < m
            prefix, suffix, middle = body[1:s], body[s + 1 : m], body[m + 1 :]
            rebuilt = tok.decode(prefix + middle + suffix)
        assert rebuilt == text


def test_fim_rate_and_counts(codellama_tok, tmp_path: Path) -> None:
    stats: dict = {}
    docs = list(read(STDLIB_JSON))
    samples = list(preprocess(iter(docs), codellama_tok, 128, stats, fim_rate=1.0, spm_rate=0.5, seed=3))
    assert stats["fim_psm"] + stats["fim_spm"] == len(docs)
    assert stats["samples"] == len(samples) == stats["tokens"] // 129
    meta = prepare("code", input=STDLIB_JSON, tokenizer=codellama_tok, seq_length=128, output=tmp_path / "fim",
                   options={"fim_rate": "0.5", "seed": "7"}, progress=False)
    assert meta["options"] == {"fim_rate": 0.5, "seed": 7}
    flat = np.concatenate([s["input_ids"] for s in open_samples(tmp_path / "fim")])
    fim_docs = meta["counts"]["fim_psm"] + meta["counts"]["fim_spm"]
    assert 0 < fim_docs < meta["counts"]["documents"]
    # every FIM document has exactly one <MID>; only the dropped tail (< one sample) can hide one
    assert fim_docs - 1 <= int((flat == codellama_tok.middle_id).sum()) <= fim_docs


def test_fim_needs_infill_pieces(llama2_tok) -> None:
    with pytest.raises(UsageError, match="32,016-piece vocabulary.*has 32000 pieces"):
        list(preprocess(iter(["x = 1\n"]), llama2_tok, 8, {}, fim_rate=1.0))
