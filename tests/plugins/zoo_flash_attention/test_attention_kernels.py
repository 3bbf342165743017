"""Every available torch attention implementation agrees with the eager reference.

Cases: plain causal (no mask), a left-padded batch, decode against a masked static
cache, MHA and GQA, fp32 (tight) and bf16 (loose). ``flash`` is checked where it
is available (CUDA + flash-attn), and reports why not elsewhere.
"""

from __future__ import annotations

import math

import pytest
import torch

from codellama_zoo.registry import get_registry

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _impls(device: str) -> dict[str, object]:
    specs = [s for s in get_registry().attention if s.backend == "torch"]
    return {s.name: s.factory() for s in specs if s.is_available(device) and s.factory is not None}


def _inputs(b: int, h: int, kv: int, t: int, length: int, d: int, dtype: torch.dtype, device: str,
            seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, t, d, generator=g).to(device, dtype)
    k = torch.randn(b, kv, length, d, generator=g).to(device, dtype)
    v = torch.randn(b, kv, length, d, generator=g).to(device, dtype)
    return q, k, v


def _padded_mask(b: int, t: int, pads: list[int], device: str) -> torch.Tensor:
    valid = torch.ones(b, t, dtype=torch.bool)
    for i, p in enumerate(pads):
        valid[i, :p] = False
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    mask = (causal[None] & valid[:, None, :]) | torch.eye(t, dtype=torch.bool)[None]
    return mask[:, None].to(device)


def _decode_mask(b: int, slot: int, length: int, pads: list[int], device: str) -> torch.Tensor:
    slots = torch.arange(length)
    mask = (slots <= slot).expand(b, length).clone()
    for i, p in enumerate(pads):
        mask[i, :p] = False
    return mask[:, None, None].to(device)  # (B,1,1,L)


def _tol(dtype: torch.dtype) -> float:
    return 1e-5 if dtype == torch.float32 else 2e-2


def test_registered_implementations() -> None:
    names = {s.name: s for s in get_registry().attention if s.backend == "torch"}
    assert {"eager", "sdpa", "flash"} <= set(names)
    assert names["flash"].priority > names["sdpa"].priority > names["eager"].priority
    assert names["sdpa"].is_available("cpu") and not names["flash"].is_available("cpu")
    assert "CUDA" in names["flash"].unavailable_reason("cpu")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("h", "kv"), [(4, 4), (8, 2)])
def test_all_implementations_agree(device: str, dtype: torch.dtype, h: int, kv: int) -> None:
    impls = _impls(device)
    assert {"eager", "sdpa"} <= set(impls)
    reference = impls["eager"]
    d, scale = 16, 1 / math.sqrt(16)
    cases = []
    q, k, v = _inputs(3, h, kv, 9, 9, d, dtype, device, seed=1)
    cases.append(("causal", q, k, v, None))
    cases.append(("left-padded", q, k, v, _padded_mask(3, 9, [0, 2, 6], device)))
    q1, k1, v1 = _inputs(3, h, kv, 1, 12, d, dtype, device, seed=2)
    cases.append(("decode", q1, k1, v1, _decode_mask(3, 7, 12, [0, 2, 6], device)))
    for case, q_, k_, v_, mask in cases:
        expected = reference(q_, k_, v_, mask, scale)  # type: ignore[operator]
        assert expected.shape == q_.shape and expected.dtype == dtype
        for name, fn in impls.items():
            out = fn(q_, k_, v_, mask, scale)  # type: ignore[operator]
            assert out.shape == q_.shape and out.dtype == dtype, (name, case)
            diff = float((out.float() - expected.float()).abs().max())
            assert diff <= _tol(dtype), (name, case, diff)


def test_eager_matches_textbook_attention_with_repeated_heads() -> None:
    from zoo_torch.model import eager_attention

    q, k, v = _inputs(2, 6, 3, 5, 5, 8, torch.float64, "cpu")
    scores = q @ k.repeat_interleave(2, dim=1).transpose(-1, -2) / math.sqrt(8)
    scores = scores.masked_fill(~torch.ones(5, 5, dtype=torch.bool).tril(), float("-inf"))
    expected = scores.softmax(-1) @ v.repeat_interleave(2, dim=1)
    out = eager_attention(q, k, v, None, 1 / math.sqrt(8))
    assert torch.allclose(out, expected, atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="flash-attn needs a CUDA GPU")
def test_flash_on_cuda_matches_sdpa() -> None:
    impls = _impls("cuda")
    if "flash" not in impls:
        pytest.skip("flash-attn is not installed")
    q, k, v = _inputs(2, 8, 2, 64, 64, 64, torch.bfloat16, "cuda")
    out = impls["flash"](q, k, v, None, 0.125)  # type: ignore[operator]
    ref = impls["sdpa"](q, k, v, None, 0.125)  # type: ignore[operator]
    assert float((out.float() - ref.float()).abs().max()) < 2e-2
