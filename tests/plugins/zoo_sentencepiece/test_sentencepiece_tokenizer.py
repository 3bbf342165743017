"""The tokenizer against the sentencepiece library on the real Llama 2 model."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import pytest
import sentencepiece

from codellama_zoo.errors import WeightsError
from codellama_zoo.registry import get_registry
from zoo_sentencepiece.tokenizer import SentencePieceTokenizer

CORPUS = [
    "def fibonacci(n: int) -> int:\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "#include <stdio.h>\nint main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    "    four spaces, then\ttab\t\tand two tabs",
    "trailing spaces     ",
    "  leading and   inner     runs",
    "\n\n\nblank lines\r\nwindows line\r\n",
    "Ünïcödé: naïve café, 日本語のテキスト, 한국어, Ελληνικά, русский",
    "emoji 🦙🔥 and math ∑∫√ and a lone ☺",
    "<PRE> <SUF> <MID> <EOT> [INST] <<SYS>> text that looks special",
    "x" * 300,
    "",
    " ",
    "\t",
    "SELECT * FROM users WHERE name = 'O''Brien';  -- comment",
    "fn main() { let v: Vec<u8> = vec![0xff; 16]; }",
]


@pytest.fixture(params=["llama2", "codellama"])
def model_file(request: pytest.FixtureRequest, llama2_tokenizer_model: Path, codellama_tokenizer_model: Path) -> Path:
    return llama2_tokenizer_model if request.param == "llama2" else codellama_tokenizer_model


def test_ids_identical_to_sentencepiece(model_file: Path) -> None:
    reference = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
    tok = SentencePieceTokenizer(model_file)
    for text in CORPUS:
        assert tok.encode(text) == reference.encode(text), text
        assert tok.encode(text, bos=True, eos=True) == [1, *reference.encode(text), 2]
        if not tok.special_ids & set(tok.encode(text)):  # "<PRE>" typed as text can hit an added piece
            assert tok.decode(tok.encode(text)) == reference.decode(reference.encode(text))


def test_codellama_layout_has_infill_pieces(codellama_tokenizer_model: Path, llama2_tokenizer_model: Path) -> None:
    tok = SentencePieceTokenizer(codellama_tokenizer_model)
    assert tok.vocab_size == 32016
    assert (tok.prefix_id, tok.suffix_id, tok.middle_id, tok.eot_id) == (32007, 32008, 32009, 32010)
    assert tok.can_infill and tok.step_id is None
    assert set(range(32000, 32016)) <= tok.special_ids and {1, 2} <= tok.special_ids
    plain = SentencePieceTokenizer(llama2_tokenizer_model)
    assert plain.vocab_size == 32000 and not plain.can_infill
    with pytest.raises(WeightsError, match="PRE"):
        plain.require("prefix")


def test_decode_drops_special_pieces(codellama_tokenizer_model: Path) -> None:
    tok = SentencePieceTokenizer(codellama_tokenizer_model)
    body = tok.encode("return x")
    assert tok.decode([1, 32007, *body, 32010, 32013, 2]) == "return x"


def test_encode_nospace_drops_the_implicit_space(codellama_tokenizer_model: Path) -> None:
    tok = SentencePieceTokenizer(codellama_tokenizer_model)
    reference = sentencepiece.SentencePieceProcessor(model_file=str(codellama_tokenizer_model))
    for text in ["\n    return a + b\n", "b)\n", " spaced", "x = 1"]:
        ids = tok.encode_nospace(text)
        assert ids == reference.encode("☺" + text)[2:]
        assert tok.decode_nospace(ids) == text
    assert tok.encode_nospace("foo")[0] != tok.encode("foo")[0]  # "foo" vs "▁foo"


@pytest.mark.parametrize("text", CORPUS[:9])
def test_stream_decoder_reassembles_text(model_file: Path, text: str) -> None:
    tok = SentencePieceTokenizer(model_file)
    ids = tok.encode(text)
    decoder = tok.stream_decoder()
    pieces = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert "".join(pieces) == tok.decode_nospace(ids)
    assert not any("\ufffd" in p for p in pieces)  # never half a character


def test_stream_decoder_holds_multibyte_characters(llama2_tokenizer_model: Path) -> None:
    tok = SentencePieceTokenizer(llama2_tokenizer_model)
    ids = tok.encode("a 🦙 b")  # the llama is four byte-fallback pieces
    decoder = tok.stream_decoder()
    pieces = [decoder.push(i) for i in ids]
    assert pieces[2:5] == ["", "", ""]
    assert pieces[5] == "🦙"
    assert "".join(pieces) == " a 🦙 b"


def test_stream_decoder_strips_first_space_for_chat(llama2_tokenizer_model: Path) -> None:
    tok = SentencePieceTokenizer(llama2_tokenizer_model)
    decoder = tok.stream_decoder(strip_leading_space=True)
    assert "".join(decoder.push(i) for i in tok.encode("Sure, here it is")) == "Sure, here it is"


def test_missing_file_is_a_weights_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="tokenizer.model"):
        SentencePieceTokenizer(tmp_path / "tokenizer.model")


def test_registered_and_loadable_from_a_folder(llama2_tokenizer_model: Path) -> None:
    spec = get_registry().tokenizers.get("sentencepiece")
    assert spec.files == ("tokenizer.model",)
    assert spec.load is not None
    assert spec.load(llama2_tokenizer_model.parent).vocab_size == 32000


def real_corpus(assets: Path) -> list[str]:
    """Real text: standard-library sources and Code Alpaca records (instructions, code, prose)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = [(stdlib / name).read_text(encoding="utf-8") for name in ("textwrap.py", "json/decoder.py", "heapq.py")]
    alpaca = assets / "code-alpaca" / "code_alpaca_2k.json"
    if not alpaca.exists():
        pytest.skip(f"shared asset {alpaca} not found")
    records = json.loads(alpaca.read_text(encoding="utf-8"))
    texts += [f"{r['instruction']}\n{r['input']}\n{r['output']}" for r in records[:300]]
    return texts


def test_ids_identical_on_real_code_and_instructions(model_file: Path, llama2_tokenizer_model: Path) -> None:
    reference = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
    tok = SentencePieceTokenizer(model_file)
    for text in real_corpus(llama2_tokenizer_model.parents[1]):
        ids = tok.encode(text)
        assert ids == reference.encode(text)
        if not tok.special_ids & set(ids):
            assert tok.decode(ids) == reference.decode(ids)
