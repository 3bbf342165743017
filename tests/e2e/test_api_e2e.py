"""``codellama_zoo.load`` / ``pipeline`` on tiny random checkpoints, against transformers."""

from __future__ import annotations

from pathlib import Path

import pytest

import codellama_zoo
from codellama_zoo.errors import CapabilityError, UsageError, WeightsError

pytestmark = pytest.mark.usefixtures("tiny_zoo")


def hf_greedy(path: Path, ids: list[int], n: int) -> list[int]:
    """transformers' own greedy decoding of the same checkpoint: the reference."""
    import torch
    import transformers

    model = transformers.LlamaForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0)
    return out[0, len(ids) :].tolist()


def test_greedy_completion_matches_transformers(infill_checkpoint: Path) -> None:
    model = codellama_zoo.load("tiny-codellama-7b", weights=infill_checkpoint, device="cpu")
    prompt = "def fibonacci(n):"
    ids = model.encode_completion(prompt)
    expected = hf_greedy(infill_checkpoint, ids, 12)
    result = model.decoder(model.settings(max_new_tokens=12)).generate(model.lm, model.tokenizer, [ids])[0]
    n = len(result.token_ids)  # shorter only if EOS came first
    assert list(result.token_ids) == expected[:n]
    assert n == 12 or expected[n] == 2
    assert model.complete(prompt, max_new_tokens=12) == model.tokenizer.decode_nospace(result.token_ids)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_batched_equals_one_by_one(infill_checkpoint: Path, attention: str) -> None:
    model = codellama_zoo.load(weights=infill_checkpoint, device="cpu", attention=attention)
    assert model.lm.attention == attention
    prompts = ["import os\n", "def quicksort(arr):\n    ", "x", "# 日本語のコメント\nclass Foo:"]
    batched = model.generate(prompts, max_new_tokens=10)
    assert batched == [model.generate(p, max_new_tokens=10) for p in prompts]


def test_stream_concatenates_to_the_completion(infill_checkpoint: Path) -> None:
    model = codellama_zoo.load("tiny-codellama-7b", weights=infill_checkpoint)
    pieces = list(model.stream("for i in range(", max_new_tokens=16))
    assert len(pieces) > 1
    assert "".join(pieces) == model.complete("for i in range(", max_new_tokens=16)


def test_seeded_sampling_reproduces(infill_checkpoint: Path) -> None:
    model = codellama_zoo.load("tiny-codellama-7b", weights=infill_checkpoint)
    knobs = dict(max_new_tokens=10, temperature=1.0, top_p=0.9, top_k=50, seed=1234)
    assert model.complete("int main(", **knobs) == model.complete("int main(", **knobs)  # type: ignore[arg-type]
    runs = {model.complete("int main(", **{**knobs, "seed": s}) for s in range(4)}  # type: ignore[arg-type]
    assert len(runs) > 1


def test_infill_and_chat(infill_checkpoint: Path) -> None:
    model = codellama_zoo.load("tiny-codellama-7b-instruct", weights=infill_checkpoint)
    middle = model.infill("def add(a, b):\n    ", "\n    return c\n", max_new_tokens=8)
    assert isinstance(middle, str)
    assert "".join(model.infill("x = ", "\n", stream=True, max_new_tokens=8)) == model.infill("x = ", "\n", max_new_tokens=8)
    reply = model.chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}], max_new_tokens=8)
    assert isinstance(reply, str) and not reply.startswith(" ")


def test_infill_refused_for_python_variant(python_checkpoint: Path) -> None:
    model = codellama_zoo.load("tiny-codellama-7b-python", weights=python_checkpoint)
    with pytest.raises(CapabilityError, match="cannot infill"):
        model.infill("a", "b")
    with pytest.raises(CapabilityError, match="cannot chat"):
        model.chat([{"role": "user", "content": "hi"}])


def test_pipeline_takes_a_list_of_prompts(infill_checkpoint: Path) -> None:
    pipe = codellama_zoo.pipeline("text_generation", model="tiny-codellama-7b", weights=infill_checkpoint, max_new_tokens=6)
    out = pipe(["def bubble_sort(arr):", "import numpy"], do_sample=False)
    assert [o["prompt"] for o in out] == ["def bubble_sort(arr):", "import numpy"]
    assert out[0]["text_generation_text"] == ["def bubble_sort(arr):" + out[0]["generated_text"]]
    assert out[1]["generated_text"] == pipe.model.complete("import numpy", max_new_tokens=6)
    with pytest.raises(UsageError, match="unknown pipeline task"):
        codellama_zoo.pipeline("summarize", model=pipe.model)


def test_load_errors(infill_checkpoint: Path, python_checkpoint: Path) -> None:
    with pytest.raises(WeightsError, match="zoo download tiny-codellama-7b"):
        codellama_zoo.load("tiny-codellama-7b")
    with pytest.raises(WeightsError, match="vocab_size 32016 vs 32000"):
        codellama_zoo.load("tiny-codellama-7b", weights=python_checkpoint)
    with pytest.raises(WeightsError, match="dim 4096 vs 64"):
        codellama_zoo.load("codellama-7b", weights=infill_checkpoint)
    with pytest.raises(UsageError, match="model name"):
        codellama_zoo.load()
    with pytest.raises(codellama_zoo.ConfigError, match="allowed"):
        codellama_zoo.load(weights=infill_checkpoint).complete("x", temprature=0.5)
