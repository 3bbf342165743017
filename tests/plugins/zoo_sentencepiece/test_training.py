"""The tokenizer trainer: Code Llama's special layout, lossless code, CLI."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
from click.testing import CliRunner

from codellama_zoo import plugins
from codellama_zoo.cli import cli
from codellama_zoo.errors import UsageError
from zoo_sentencepiece.plugin import load_tokenizer
from zoo_sentencepiece.training import CONTROL_PIECES, chunk_text, collect_files, train_tokenizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])
CORPUS = [STDLIB / "json", STDLIB / "textwrap.py"]
VOCAB = 512


@pytest.fixture
def only_tokenizer_plugins() -> None:
    """The CLI with just the tokenizer plugins, independent of other plugins' state."""
    pm = plugins.make_plugin_manager(("zoo_sentencepiece.plugin", "zoo_sentencepiece.commands"), entry_points=False)
    plugins.set_plugin_manager(pm)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "tokenizer.model"
    train_tokenizer(CORPUS, out, VOCAB)
    return out


def test_special_layout_matches_llama(trained: Path) -> None:
    tok = load_tokenizer(trained)
    assert tok.vocab_size == VOCAB
    assert (tok.sp.unk_id(), tok.bos_id, tok.eos_id, tok.sp.pad_id()) == (0, 1, 2, -1)
    ids = [tok.prefix_id, tok.suffix_id, tok.middle_id, tok.eot_id]
    assert [tok.id_to_piece(i) for i in ids] == list(CONTROL_PIECES)
    assert tok.can_infill
    assert all(tok.sp.is_control(i) for i in ids)


def test_control_pieces_never_come_from_text(trained: Path) -> None:
    tok = load_tokenizer(trained)
    ids = tok.encode("x = '▁<PRE> <SUF> ▁<MID> <EOT>'")
    assert not set(ids) & {tok.prefix_id, tok.suffix_id, tok.middle_id, tok.eot_id}


@pytest.mark.parametrize(
    "text",
    [
        "def f(x):\n    return x + 1\n",
        "class A:\n\tdef g(self):  \n\t\tpass\n\n\n",
        "s = '☃ é 中文 🐍'  # unseen characters\n",
        "x  =  [1,   2,    3]\r\n",
        "",
    ],
)
def test_any_text_round_trips(trained: Path, text: str) -> None:
    tok = load_tokenizer(trained)
    assert tok.decode(tok.encode(text, bos=True, eos=True)) == text


def test_indentation_is_compact(trained: Path) -> None:
    tok = load_tokenizer(trained)
    body = tok.encode_nospace("        return value\n")
    # Eight spaces of indentation are one or two pieces, not eight.
    assert tok.id_to_piece(body[0]).strip("▁") == ""
    assert len([i for i in body if tok.id_to_piece(i).strip("▁") == ""]) <= 2


def test_digits_are_split(trained: Path) -> None:
    tok = load_tokenizer(trained)
    assert [tok.id_to_piece(i) for i in tok.encode_nospace("12345")] == list("12345")


def test_fim_datasets_find_the_infill_ids(trained: Path) -> None:
    from zoo_datasets.tokenizer import fim_ids

    ids = fim_ids(load_tokenizer(trained))
    assert ids is not None and len(set(ids.values())) == 4


def test_training_is_deterministic(tmp_path: Path, trained: Path) -> None:
    again = train_tokenizer(CORPUS, tmp_path / "again.model", VOCAB)
    assert again.output.read_bytes() == trained.read_bytes()
    assert 0 < again.pieces_per_char < 1


def test_chunks_keep_whole_lines_under_the_limit() -> None:
    text = "".join(f"line_{i} = {i}\n" for i in range(500))
    chunks = list(chunk_text(text, max_bytes=200))
    assert "".join(chunks) == text
    assert all(len(c.encode()) <= 200 and c.endswith("\n") for c in chunks)


def test_collect_files_walks_directories_sorted(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.py").write_text("z = 1\n")
    (tmp_path / "a.py").write_text("a = 1\n")
    (tmp_path / "notes.txt").write_text("no\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "c.py").write_text("c = 1\n")
    assert collect_files([tmp_path]) == [tmp_path / "a.py", tmp_path / "b" / "z.py"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vocab_size": 100}, "at least 300"),
        ({"model_type": "wordpiece"}, "allowed: bpe, unigram"),
        ({"inputs": ["/no/such/dir"]}, "does not exist"),
    ],
)
def test_bad_requests_are_clear_errors(tmp_path: Path, kwargs: dict, message: str) -> None:
    args = {"inputs": CORPUS, "output": tmp_path / "t.model", "vocab_size": VOCAB, **kwargs}
    with pytest.raises(UsageError, match=message):
        train_tokenizer(**args)


def test_cli_trains_and_encodes(tmp_path: Path, only_tokenizer_plugins: None) -> None:
    out = tmp_path / "cli.model"
    runner = CliRunner()
    result = runner.invoke(
        cli, ["tokenizer", "train", "--input", str(STDLIB / "json"), "--vocab-size", "400", "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "400 pieces" in result.output and out.is_file()
    shown = runner.invoke(cli, ["tokenizer", "encode", str(out), "if x:\\n    y"])
    assert shown.exit_code == 0, shown.output
    assert "pieces for 11 characters" in shown.output


def test_cli_reports_bad_vocab_in_one_line(tmp_path: Path, only_tokenizer_plugins: None) -> None:
    result = CliRunner().invoke(
        cli, ["tokenizer", "train", "--input", str(STDLIB / "json"), "--vocab-size", "10", "--output", str(tmp_path / "x")]
    )
    assert result.exit_code != 0
    assert "at least 300" in result.output
