"""Instruct prompts against Meta's chat_completion layouts, token for token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sentencepiece

from codellama_vocab import codellama70b_tokenizer_model, codellama_tokenizer_model
from codellama_zoo.errors import UsageError, WeightsError
from codellama_zoo.registry import get_registry
from zoo_codellama.chat import build_instruct, build_instruct_70b
from zoo_sentencepiece.tokenizer import SentencePieceTokenizer

__all__ = ["codellama70b_tokenizer_model", "codellama_tokenizer_model"]

DIALOGS = [
    [{"role": "user", "content": "Write a function that reverses a string."}],
    [
        {"role": "system", "content": "Answer only in Python code."},
        {"role": "user", "content": "  sort a list  "},
    ],
    [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": " 4 "},
        {"role": "user", "content": "And 日本語 ☺?\n\tTabs   and spaces"},
    ],
    [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "write fizzbuzz"},
        {"role": "assistant", "content": "for i in range(1, 101): ..."},
        {"role": "user", "content": "now in C"},
    ],
]


def meta_inst(sp: sentencepiece.SentencePieceProcessor, dialog: list[dict[str, str]]) -> list[int]:
    """Meta's chat_completion for [INST] models, with Tokenizer.encode inlined."""
    bos, eos = sp.bos_id(), sp.eos_id()
    if dialog[0]["role"] == "system":
        merged = "<<SYS>>\n" + dialog[0]["content"] + "\n<</SYS>>\n\n" + dialog[1]["content"]
        dialog = [{"role": dialog[1]["role"], "content": merged}, *dialog[2:]]
    ids: list[int] = []
    for prompt, answer in zip(dialog[::2], dialog[1::2], strict=False):
        ids += [bos, *sp.encode(f"[INST] {prompt['content'].strip()} [/INST] {answer['content'].strip()} "), eos]
    return ids + [bos, *sp.encode(f"[INST] {dialog[-1]['content'].strip()} [/INST]")]


def meta_70b(sp: sentencepiece.SentencePieceProcessor, dialog: list[dict[str, str]]) -> list[int]:
    """Meta's dialog_prompt_tokens (70B), with Tokenizer.encode inlined."""
    if dialog[0]["role"] != "system":
        dialog = [{"role": "system", "content": ""}, *dialog]
    step = sp.piece_to_id("<step>")
    ids = [sp.bos_id()]
    for message in dialog:
        headers = [f"Source: {message['role'].strip()}"]
        if message.get("destination") is not None:
            headers.append(f"Destination: {message['destination'].strip()}")
        ids += sp.encode(" " + "\n".join(headers))
        if message["content"]:
            ids += sp.encode("\n\n " + message["content"].strip())
        ids.append(step)
    ids += sp.encode(" " + "\n".join(["Source: assistant", "Destination: user"]))
    return ids + sp.encode("\n\n ")


@pytest.mark.parametrize("dialog", DIALOGS)
def test_instruct_matches_meta(codellama_tokenizer_model: Path, dialog: list[dict[str, str]]) -> None:
    sp = sentencepiece.SentencePieceProcessor(model_file=str(codellama_tokenizer_model))
    ids = build_instruct(SentencePieceTokenizer(codellama_tokenizer_model), dialog)
    assert ids == meta_inst(sp, dialog)
    assert ids[0] == 1 and sp.decode(ids[:8]).startswith("[INST]")


def test_instruct_text_shape(llama2_tokenizer_model: Path) -> None:
    tok = SentencePieceTokenizer(llama2_tokenizer_model)
    ids = build_instruct(tok, DIALOGS[2])
    second = ids.index(2) + 1  # after the first </s>
    assert tok.decode(ids[:second]) == "[INST] <<SYS>>\nBe terse.\n<</SYS>>\n\nWhat is 2+2? [/INST] 4 "
    assert ids[second] == 1 and tok.decode(ids[second:]).startswith("[INST] And 日本語")


@pytest.mark.parametrize("dialog", DIALOGS)
def test_70b_matches_meta(codellama70b_tokenizer_model: Path, dialog: list[dict[str, str]]) -> None:
    sp = sentencepiece.SentencePieceProcessor(model_file=str(codellama70b_tokenizer_model))
    tok = SentencePieceTokenizer(codellama70b_tokenizer_model)
    assert tok.step_id == 32015
    ids = build_instruct_70b(tok, dialog)
    assert ids == meta_70b(sp, dialog)
    assert ids.count(32015) == len(dialog) + (dialog[0]["role"] != "system")


def test_70b_destination_header(codellama70b_tokenizer_model: Path) -> None:
    sp = sentencepiece.SentencePieceProcessor(model_file=str(codellama70b_tokenizer_model))
    dialog = [
        {"role": "system", "content": "tools available", "destination": "user"},
        {"role": "user", "content": "run it", "destination": None},
    ]
    ids = build_instruct_70b(SentencePieceTokenizer(codellama70b_tokenizer_model), dialog)
    assert ids == meta_70b(sp, dialog)
    assert "Source: system\nDestination: user" in sp.decode(ids)


def test_70b_needs_step_piece(codellama_tokenizer_model: Path) -> None:
    with pytest.raises(WeightsError, match="<step>"):
        build_instruct_70b(SentencePieceTokenizer(codellama_tokenizer_model), DIALOGS[0])


@pytest.mark.parametrize(
    "bad",
    [
        [],
        [{"role": "assistant", "content": "x"}],
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
        [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
        [{"role": "robot", "content": "a"}],
        [{"role": "user"}],
    ],
)
def test_bad_dialogs_are_usage_errors(llama2_tokenizer_model: Path, bad: list[dict[str, str]]) -> None:
    with pytest.raises(UsageError, match="chat message"):
        build_instruct(SentencePieceTokenizer(llama2_tokenizer_model), bad)


def test_registered_and_named_by_the_presets() -> None:
    registry = get_registry()
    assert registry.prompt_formats.get("codellama-instruct").kind == "chat"
    assert registry.prompt_formats.get("codellama-70b-instruct").stop_tokens == ("<step>",)
    for spec in registry.models:
        assert spec.prompt_format in registry.prompt_formats
        for name in spec.infill_formats:
            assert name in registry.prompt_formats


def test_code_alpaca_dialogs_match_meta(
    codellama_tokenizer_model: Path, codellama70b_tokenizer_model: Path, llama2_tokenizer_model: Path
) -> None:
    """Real instructions and answers as multi-turn dialogs, in both templates."""
    data = llama2_tokenizer_model.parents[1] / "code-alpaca" / "code_alpaca_2k.json"
    if not data.exists():
        pytest.skip(f"shared asset {data} not found")
    records = json.loads(data.read_text(encoding="utf-8"))[:120]
    sp = sentencepiece.SentencePieceProcessor(model_file=str(codellama_tokenizer_model))
    sp70 = sentencepiece.SentencePieceProcessor(model_file=str(codellama70b_tokenizer_model))
    tok, tok70 = SentencePieceTokenizer(codellama_tokenizer_model), SentencePieceTokenizer(codellama70b_tokenizer_model)
    for first, second in zip(records[::2], records[1::2], strict=True):
        dialog = [
            {"role": "system", "content": "You are a careful programmer."},
            {"role": "user", "content": f"{first['instruction']}\n{first['input']}"},
            {"role": "assistant", "content": first["output"]},
            {"role": "user", "content": f"{second['instruction']}\n\n{second['input']}"},
        ]
        assert build_instruct(tok, dialog) == meta_inst(sp, dialog)
        assert build_instruct_70b(tok70, dialog) == meta_70b(sp70, dialog)
