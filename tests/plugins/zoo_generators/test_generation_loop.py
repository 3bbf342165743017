"""The decoding loop: batching, stops, streaming, seeds, on fake LanguageModels."""

from __future__ import annotations

from pathlib import Path

import pytest
from generator_fakes import HashLM, ScriptedLM

from codellama_zoo.config import GenerateConfig
from codellama_zoo.errors import UsageError
from codellama_zoo.registry import get_registry
from zoo_sentencepiece.tokenizer import SentencePieceTokenizer


@pytest.fixture
def tok(llama2_tokenizer_model: Path) -> SentencePieceTokenizer:
    return SentencePieceTokenizer(llama2_tokenizer_model)


def decoder(**knobs: object) -> object:
    config = GenerateConfig(**knobs)  # type: ignore[arg-type]
    name = "greedy" if config.temperature == 0 else "sample"
    factory = get_registry().generators.get(name).factory
    assert factory is not None
    return factory(config)


PROMPTS = ["def fibonacci(n):", "x", "import numpy as np\nimport torch\n\nclass Model(torch.nn.Module):", "# 日本語"]


def test_batched_equals_one_by_one_greedy(tok: SentencePieceTokenizer) -> None:
    ids = [tok.encode(p, bos=True) for p in PROMPTS]
    gen = decoder(max_new_tokens=12)
    batched = gen.generate(HashLM(), tok, ids)  # type: ignore[attr-defined]
    alone = [gen.generate(HashLM(), tok, [p])[0] for p in ids]  # type: ignore[attr-defined]
    assert [c.token_ids for c in batched] == [c.token_ids for c in alone]
    assert [c.text for c in batched] == [c.text for c in alone]
    assert all(len(c.token_ids) == 12 and c.finish_reason == "length" for c in batched)


def test_batched_equals_one_by_one_with_seeded_sampling(tok: SentencePieceTokenizer) -> None:
    ids = [tok.encode(p, bos=True) for p in PROMPTS]
    first = decoder(max_new_tokens=10, temperature=0.9, top_p=0.95, seed=3).generate(HashLM(), tok, ids)  # type: ignore[attr-defined]
    again = decoder(max_new_tokens=10, temperature=0.9, top_p=0.95, seed=3).generate(HashLM(), tok, ids)  # type: ignore[attr-defined]
    other = decoder(max_new_tokens=10, temperature=0.9, top_p=0.95, seed=4).generate(HashLM(), tok, ids)  # type: ignore[attr-defined]
    assert [c.token_ids for c in first] == [c.token_ids for c in again]
    assert [c.token_ids for c in first] != [c.token_ids for c in other]


def test_seeded_decoder_repeats_across_calls(tok: SentencePieceTokenizer) -> None:
    gen = decoder(max_new_tokens=8, temperature=1.0, seed=11)
    prompt = [tok.encode("hello", bos=True)]
    assert gen.generate(HashLM(), tok, prompt)[0].token_ids == gen.generate(HashLM(), tok, prompt)[0].token_ids  # type: ignore[attr-defined]


def test_left_padding_and_one_prefill(tok: SentencePieceTokenizer) -> None:
    lm = HashLM()
    decoder(max_new_tokens=3).generate(lm, tok, [[1, 5, 6, 7], [1]])  # type: ignore[attr-defined]
    assert lm.calls[0] == ("prefill", (2, 4))
    assert [c[0] for c in lm.calls[1:]] == ["decode", "decode"]


def test_stops_at_eos_and_extra_stop_ids(tok: SentencePieceTokenizer) -> None:
    body = tok.encode("return a + b")
    lm = ScriptedLM([[*body, 2, 500]])
    done = decoder(max_new_tokens=50).generate(lm, tok, [[1, 100]])[0]  # type: ignore[attr-defined]
    assert done.text == " return a + b" and done.finish_reason == "stop" and list(done.token_ids) == body
    lm = ScriptedLM([[*body, 32010]], then=300, vocab_size=32016)
    eot = decoder(max_new_tokens=50).generate(lm, tok, [[1, 100]], stop_ids=[32010])[0]  # type: ignore[attr-defined]
    assert eot.text == " return a + b" and eot.finish_reason == "stop"


def test_finished_rows_wait_for_the_others(tok: SentencePieceTokenizer) -> None:
    short, long = tok.encode("ok"), tok.encode("a longer answer here")
    lm = ScriptedLM([short, long])
    out = decoder(max_new_tokens=30).generate(lm, tok, [[1, 5], [1, 6, 7]])  # type: ignore[attr-defined]
    assert [c.text for c in out] == [" ok", " a longer answer here"]


def test_max_new_tokens_and_context_limit(tok: SentencePieceTokenizer) -> None:
    assert len(decoder(max_new_tokens=5).generate(HashLM(), tok, [[1, 2, 3]])[0].token_ids) == 5  # type: ignore[attr-defined]
    capped = decoder(max_new_tokens=100).generate(HashLM(max_seq_len=10), tok, [[1, 5, 6]])[0]  # type: ignore[attr-defined]
    assert len(capped.token_ids) == 7
    with pytest.raises(UsageError, match="context is 10"):
        decoder().generate(HashLM(max_seq_len=10), tok, [list(range(1, 12))])  # type: ignore[attr-defined]
    assert decoder(max_new_tokens=0).generate(HashLM(), tok, [[1]])[0].text == ""  # type: ignore[attr-defined]


def test_stop_strings_cut_and_are_never_shown(tok: SentencePieceTokenizer) -> None:
    script = tok.encode("print(1)\n\ndef next_function():")
    gen = decoder(max_new_tokens=40, stop=("\ndef", "\nclass"))
    done = gen.generate(ScriptedLM([script]), tok, [[1, 100]])[0]  # type: ignore[attr-defined]
    assert done.text == " print(1)\n" and done.finish_reason == "stop_string"
    pieces = list(gen.stream(ScriptedLM([script]), tok, [1, 100]))  # type: ignore[attr-defined]
    assert "".join(pieces) == " print(1)\n"
    assert not any("def" in p for p in pieces)


def test_stream_matches_generate_and_keeps_characters_whole(tok: SentencePieceTokenizer) -> None:
    script = tok.encode("for x in ['🦙', 'é']:\n\tprint(x)  # 日本")
    pieces = list(decoder(max_new_tokens=60).stream(ScriptedLM([script]), tok, [1, 9]))  # type: ignore[attr-defined]
    assert len(pieces) > 5
    assert "".join(pieces) == " for x in ['🦙', 'é']:\n\tprint(x)  # 日本"
    assert all("\ufffd" not in p for p in pieces)
    assert pieces == [p for p in pieces if p]


def test_chat_strips_the_first_space(tok: SentencePieceTokenizer) -> None:
    script = tok.encode("Sure! Here")
    text = "".join(decoder().stream(ScriptedLM([script]), tok, [1, 9], strip_leading_space=True))  # type: ignore[attr-defined]
    assert text == "Sure! Here"


def test_empty_prompt_is_an_error(tok: SentencePieceTokenizer) -> None:
    with pytest.raises(UsageError, match="at least one token"):
        decoder().generate(HashLM(), tok, [[]])  # type: ignore[attr-defined]


def test_completion_format_registered(tok: SentencePieceTokenizer) -> None:
    spec = get_registry().prompt_formats.get("completion")
    assert spec.build is not None and spec.build(tok, "def f") == [1, *tok.encode("def f")]
    assert {"greedy", "sample"} <= set(get_registry().generators.names())
