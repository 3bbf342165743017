"""WikiText reading (headings, joiners, paragraphs) and exact packing counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from zoo_datasets.errors import DatasetError
from zoo_datasets.packing import delimit, pack
from zoo_datasets.wikitext import detokenize, heading_level, read

# Two articles in WikiText's layout: leading spaces, " = Title = ", " = = Section = = ",
# blank lines between paragraphs, the @-@ / @,@ / @.@ joiners, and a space ending every line.
FIXTURE = "".join(
    f"{line} \n"
    for line in [
        '',
        ' = Valkyria Chronicles III =',
        '',
        ' Senjō no Valkyria 3 is a tactical role @-@ playing video game .',
        '',
        ' It sold 1 @,@ 000 @,@ 000 copies , a 2 @.@ 5 % share .',
        '',
        ' = = Gameplay = =',
        '',
        " The game 's combat is turn @-@ based .",
        '',
        ' = = = Story = = =',
        '',
        ' Squad 422 fights on .',
        '',
        ' = Tower Building of the Little Rock Arsenal =',
        '',
        ' The building was built in 1840 .',
        '',
    ]
)

ARTICLE_1 = (
    "Valkyria Chronicles III\n\n"
    "Senjō no Valkyria 3 is a tactical role-playing video game .\n\n"
    "It sold 1,000,000 copies , a 2.5 % share .\n\n"
    "== Gameplay ==\n\n"
    "The game 's combat is turn-based .\n\n"
    "=== Story ===\n\n"
    "Squad 422 fights on ."
)
ARTICLE_2 = "Tower Building of the Little Rock Arsenal\n\nThe building was built in 1840 ."


@pytest.fixture
def wiki(tmp_path: Path) -> Path:
    path = tmp_path / "wiki.train.tokens"
    path.write_text(FIXTURE, encoding="utf-8")
    return path


def test_line_helpers() -> None:
    assert heading_level(" = Valkyria Chronicles III = ") == 1
    assert heading_level(" = = Gameplay = = ") == 2
    assert heading_level(" = = = Story = = = ") == 3
    assert heading_level(" a = b = c ") == 0
    assert detokenize(" 1 @,@ 000 @.@ 5 @-@ x ") == "1,000.5-x"


def test_articles(wiki: Path) -> None:
    assert list(read(wiki)) == [ARTICLE_1, ARTICLE_2]


def test_paragraphs_drop_headings(wiki: Path) -> None:
    paragraphs = list(read(wiki, documents="paragraph"))
    assert paragraphs == [
        "Senjō no Valkyria 3 is a tactical role-playing video game .",
        "It sold 1,000,000 copies , a 2.5 % share .",
        "The game 's combat is turn-based .",
        "Squad 422 fights on .",
        "The building was built in 1840 .",
    ]


def test_folder_reads_every_tokens_file_sorted(wiki: Path) -> None:
    (wiki.parent / "a.tokens").write_text(" = First = \n \n Text . \n", encoding="utf-8")
    assert list(read(wiki.parent)) == ["First\n\nText .", ARTICLE_1, ARTICLE_2]


@pytest.mark.parametrize("length", [7, 16, 64, 100])
def test_packing_boundaries_and_counts_exact(char_tok, length: int) -> None:
    docs = [ARTICLE_1, ARTICLE_2, "x" * 5]
    stream = [t for d in docs for t in [1, *char_tok.encode(d), 2]]
    stats: dict = {}
    samples = list(pack((delimit(char_tok, d) for d in docs), length, stats))
    assert len(samples) == len(stream) // length == stats["samples"]
    assert stats["tokens"] == len(stream) and stats["documents"] == 3
    assert stats["dropped_tokens"] == len(stream) % length
    for i, sample in enumerate(samples):
        assert sample["input_ids"].dtype == np.int32
        assert sample["input_ids"].tolist() == stream[i * length : (i + 1) * length]


def test_real_tokenizer_counts(wiki: Path, llama2_tok, tmp_path: Path) -> None:
    from zoo_datasets.prepare import prepare
    from zoo_datasets.storage import open_samples

    docs = list(read(wiki))
    stream = [t for d in docs for t in [llama2_tok.bos_id, *llama2_tok.encode(d), llama2_tok.eos_id]]
    seq = 15
    meta = prepare("wikitext", input=wiki, tokenizer=llama2_tok, seq_length=seq, output=tmp_path / "out",
                   progress=False)
    assert meta["counts"]["tokens"] == len(stream)
    assert meta["count"] == len(stream) // (seq + 1)
    assert meta["counts"]["dropped_tokens"] == len(stream) % (seq + 1)
    assert meta["sample_length"] == seq + 1
    samples = open_samples(tmp_path / "out")
    flat = np.concatenate([s["input_ids"] for s in samples]).tolist()
    assert flat == stream[: len(flat)]
    assert stream.count(llama2_tok.bos_id) == 2  # one BOS/EOS pair per article


def test_errors_name_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.tokens"
    empty.write_text(" \n \n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"empty\.tokens: file is empty"):
        list(read(empty))
    with pytest.raises(DatasetError, match="does not exist"):
        list(read(tmp_path / "missing.tokens"))
    with pytest.raises(DatasetError, match="unknown documents mode 'pages'"):
        list(read(empty, documents="pages"))
    binary = tmp_path / "bin.tokens"
    binary.write_bytes(b"\xff\xfe = x = ")
    with pytest.raises(DatasetError, match="not UTF-8"):
        list(read(binary))
