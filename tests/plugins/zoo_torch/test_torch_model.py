"""The torch model against transformers.LlamaForCausalLM (fp32, max abs diff <= 1e-4).

Every Code Llama preset shrunk (same head grouping, theta, vocab, FFN rule), and
the full-width 7B and 34B shapes with one layer; a left-padded batch, cached
prefill + decode = full recompute; greedy generation = transformers' generate().
"""

from __future__ import annotations

import gc

import attrs
import numpy as np
import pytest
import torch
from torch_testing import hf_model, hf_positions, left_padded, max_diff_on_tokens, random_model, shrink

from codellama_zoo.registry import get_registry
from zoo_codellama.presets import ARCHITECTURES
from zoo_torch.model import Transformer

pytest.importorskip("transformers")

TOL = 1e-4


def _preset_names() -> list[str]:
    from zoo_codellama.plugin import codellama_specs

    return [s.name for s in codellama_specs()]


def _check_against_hf(model: Transformer, batch: int = 3, length: int = 12, pads: list[int] | None = None,
                      decode_steps: int = 3) -> None:
    cfg = model.config
    hf = hf_model(model)
    pads = pads if pads is not None else [0, 3, 7][:batch]
    ids, mask = left_padded(cfg.vocab_size, batch, length, pads, seed=cfg.dim)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, position_ids=hf_positions(mask)).logits.float()
        ours = model(ids, mask)
        assert ours.dtype == torch.float32 and ours.shape == (batch, length, cfg.vocab_size)
        assert max_diff_on_tokens(ours, ref, mask) <= TOL

        # cached: prefill then decode steps, each = full recompute (ours) and = transformers
        model.setup_caches(batch, length + decode_steps)
        prefill = model(ids, mask, input_pos=torch.arange(length), kv_len=length)
        assert max_diff_on_tokens(prefill, ref, mask) <= TOL
        g = torch.Generator().manual_seed(7)
        all_ids, all_mask = ids, mask
        for step in range(decode_steps):
            nxt = torch.randint(3, cfg.vocab_size, (batch, 1), generator=g)
            all_ids = torch.cat([all_ids, nxt], 1)
            all_mask = torch.cat([all_mask, torch.ones(batch, 1, dtype=torch.long)], 1)
            slot = length + step
            # alternate the two cache modes: only the used slots, and the whole static cache
            kv_len = slot + 1 if step % 2 == 0 else None
            dec = model(nxt, None, input_pos=torch.tensor([slot]), kv_len=kv_len)[:, -1]
            full = model(all_ids, all_mask)[:, -1]
            ref_full = hf(input_ids=all_ids, attention_mask=all_mask, position_ids=hf_positions(all_mask)).logits
            assert float((dec - full).abs().max()) <= TOL
            assert float((dec - ref_full[:, -1].float()).abs().max()) <= TOL
        model.free_caches()


@pytest.mark.parametrize("name", _preset_names())
def test_every_preset_shrunk_matches_transformers(name: str) -> None:
    spec = get_registry().model(name)
    cfg = shrink(spec.config)
    assert cfg.n_rep == spec.config.n_rep and cfg.rope_theta == spec.config.rope_theta == 1e6
    assert cfg.vocab_size == spec.config.vocab_size
    model = random_model(cfg, seed=len(name), attention="sdpa")
    _check_against_hf(model)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_gqa_tiny_matches_transformers_with_each_attention(attention: str) -> None:
    cfg = shrink(ARCHITECTURES["34b"], n_layers=2)
    _check_against_hf(random_model(cfg, seed=3, attention=attention))


@pytest.mark.slow
@pytest.mark.parametrize("size", ["7b", "34b"])
def test_full_width_one_layer_matches_transformers(size: str) -> None:
    cfg = attrs.evolve(ARCHITECTURES[size], n_layers=1)
    model = random_model(cfg, seed=11, std=0.02, attention="sdpa")  # weights shared with the HF model
    try:
        _check_against_hf(model, batch=2, length=6, pads=[0, 2], decode_steps=2)
    finally:
        del model
        gc.collect()


def test_greedy_32_tokens_identical_to_transformers_generate() -> None:
    cfg = shrink(ARCHITECTURES["7b"], n_layers=2)
    model = random_model(cfg, seed=5, std=0.1, attention="sdpa")
    hf = hf_model(model)
    ids, mask = left_padded(cfg.vocab_size, 2, 9, [0, 4], seed=1)
    with torch.no_grad():
        ref = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=32, min_new_tokens=32, do_sample=False,
                          pad_token_id=0, eos_token_id=None)[:, 9:]
    from zoo_torch.runtime import TorchLanguageModel

    lm = TorchLanguageModel(model, "cpu", "fp32", "sdpa")
    ours = lm.generate_greedy(ids.numpy(), mask.numpy(), 32)
    np.testing.assert_array_equal(ours, ref.numpy())
    # the same through the LanguageModel protocol: prefill + decode with numpy logits
    lm.start(2, 9 + 32)
    logits = lm.prefill(ids.numpy(), mask.numpy())
    tokens = []
    for _ in range(32):
        nxt = logits.argmax(-1)
        tokens.append(nxt)
        logits = lm.decode(nxt)
    np.testing.assert_array_equal(np.stack(tokens, 1), ref.numpy())


def test_padding_does_not_change_a_row() -> None:
    cfg = shrink(ARCHITECTURES["13b"])
    model = random_model(cfg, seed=2, attention="sdpa")
    ids, mask = left_padded(cfg.vocab_size, 2, 10, [0, 4], seed=3)
    with torch.no_grad():
        alone = model(ids[1:, 4:])  # the padded row without its padding
        padded = model(ids, mask)[1:, 4:]
    assert float((alone - padded).abs().max()) <= 1e-5


@pytest.mark.parametrize(("dtype", "tol"), [(torch.bfloat16, 0.15), (torch.float16, 0.02)])
def test_half_precision_weights_give_fp32_logits_close_to_fp32(dtype: torch.dtype, tol: float) -> None:
    cfg = shrink(ARCHITECTURES["34b"])
    ref = random_model(cfg, seed=4)
    half = Transformer(cfg, dtype=dtype)
    half.load_state_dict({k: v.to(dtype) for k, v in ref.state_dict().items()})
    half.eval()
    ids, mask = left_padded(cfg.vocab_size, 2, 8, [0, 3])
    with torch.no_grad():
        out = half(ids, mask)
        expected = ref(ids, mask)
        assert out.dtype == torch.float32
        assert half.inv_freq.dtype == torch.float32
        assert max_diff_on_tokens(out, expected, mask) < tol
        half.setup_caches(2, 9)
        pre = half(ids, mask, input_pos=torch.arange(8), kv_len=8)
        assert max_diff_on_tokens(pre, out, mask) < tol


def test_forward_is_autograd_friendly_and_does_not_touch_parameters() -> None:
    cfg = shrink(ARCHITECTURES["7b"])
    model = Transformer(cfg)
    model.init_weights(generator=torch.Generator().manual_seed(0))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = torch.randint(0, cfg.vocab_size, (2, 6))
    logits = model(ids)
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, cfg.vocab_size), ids[:, 1:].reshape(-1))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_module_names_are_metas() -> None:
    cfg = shrink(ARCHITECTURES["34b"], n_layers=1)
    names = set(Transformer(cfg, device="meta").state_dict())
    assert names == {
        "tok_embeddings.weight", "norm.weight", "output.weight",
        *(f"layers.0.attention.{w}.weight" for w in ("wq", "wk", "wv", "wo")),
        *(f"layers.0.feed_forward.{w}.weight" for w in ("w1", "w2", "w3")),
        "layers.0.attention_norm.weight", "layers.0.ffn_norm.weight",
    }


def test_cache_misuse_is_a_clear_error() -> None:
    cfg = shrink(ARCHITECTURES["7b"], n_layers=1)
    model = random_model(cfg)
    with pytest.raises(RuntimeError, match="setup_caches"):
        model(torch.zeros(1, 2, dtype=torch.long), input_pos=torch.arange(2))
