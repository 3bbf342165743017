"""The MindSpore attention entries: math everywhere, FlashAttentionScore on Ascend only."""

from __future__ import annotations

import inspect
import logging
import math
from typing import Any

import numpy as np
import pytest
from mindspore_testing import tiny  # sets GLOG_v before MindSpore is imported

ms = pytest.importorskip("mindspore")


from codellama_zoo.errors import BackendUnavailableError  # noqa: E402
from codellama_zoo.registry import get_registry  # noqa: E402

pytestmark = pytest.mark.mindspore
ON_ASCEND = bool(ms.hal.is_available("Ascend"))
DOCUMENTED = inspect.signature(ms.ops.flash_attention_score)  # taken before any monkeypatching


def test_flash_is_registered_and_unavailable_off_ascend() -> None:
    registry = get_registry()
    flash = registry.attention_for("mindspore", "flash")
    math_spec = registry.attention_for("mindspore", "math")
    assert flash.priority > math_spec.priority
    assert not flash.is_available("cpu")
    assert "Ascend" in flash.unavailable_reason("cpu")
    assert math_spec.is_available("cpu")


def test_auto_falls_back_to_math_on_cpu_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    from zoo_mindspore.backend import load_model

    with caplog.at_level(logging.INFO, logger="zoo_mindspore"):
        lm = load_model(tiny("7b", n_layers=1), None, device="cpu", dtype="fp32", attention="auto")
    assert lm.attention == "math" and lm.backend == "mindspore" and lm.device == "cpu"
    assert "'flash' is not available on cpu" in caplog.text and "Ascend" in caplog.text
    assert "falling back to 'math'" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="zoo_mindspore"):  # `zoo run` resolves auto itself, then asks for math
        load_model(tiny("7b", n_layers=1), None, device="cpu", dtype="fp32", attention="math")
    assert "falling back to 'math'" in caplog.text


def test_asking_for_flash_on_cpu_is_a_clear_error() -> None:
    from zoo_mindspore.backend import resolve_attention

    with pytest.raises(BackendUnavailableError, match=r"attention 'flash' is not available on cpu.*Ascend.*math"):
        resolve_attention("flash", "cpu")


def test_bf16_compute_is_refused_on_cpu() -> None:
    from codellama_zoo.errors import CapabilityError
    from zoo_mindspore.backend import load_model

    with pytest.raises(CapabilityError, match="bf16 only on Ascend"):
        load_model(tiny("7b", n_layers=1), None, device="cpu", dtype="bf16")


def _documented_flash_attention_score(*args: Any, **kwargs: Any) -> Any:
    """A CPU stand-in that checks the call against the documented contract, then computes it."""
    bound = DOCUMENTED.bind(*args, **kwargs)
    bound.apply_defaults()
    a = bound.arguments
    assert a["input_layout"] == "BNSD" and a["sparse_mode"] == 0 and a["keep_prob"] == 1.0
    q, k, v, mask = a["query"], a["key"], a["value"], a["attn_mask"]
    assert q.dtype in (ms.float16, ms.bfloat16) and k.dtype == q.dtype == v.dtype
    assert mask.dtype == ms.bool_ and mask.shape == (q.shape[0], 1, q.shape[2], k.shape[2])
    n1, n2 = q.shape[1], k.shape[1]
    assert a["head_num"] == n1 and n1 % n2 == 0 and q.shape[-1] % 16 == 0
    qn, kn, vn = (x.astype(ms.float32).asnumpy() for x in (q, k, v))
    kn, vn = np.repeat(kn, n1 // n2, axis=1), np.repeat(vn, n1 // n2, axis=1)
    scores = qn @ kn.swapaxes(-1, -2) * a["scalar_value"]
    scores = np.where(mask.asnumpy(), -np.inf, scores)  # True discards
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return ms.Tensor(probs @ vn, q.dtype)


def test_flash_kernel_follows_the_documented_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off Ascend, the kernel's call is checked against the documented contract and its math."""
    from mindspore import ops

    from zoo_flash_attention.mindspore_flash import flash_attention
    from zoo_mindspore.model import math_attention

    monkeypatch.setattr(ops, "flash_attention_score", _documented_flash_attention_score)
    rng = np.random.default_rng(0)
    b, h, kv, t, length, d = 2, 8, 2, 3, 20, 16
    q = ms.Tensor(rng.normal(size=(b, h, t, d)).astype(np.float16))
    k = ms.Tensor(rng.normal(size=(b, kv, length, d)).astype(np.float16))
    v = ms.Tensor(rng.normal(size=(b, kv, length, d)).astype(np.float16))
    keep = rng.random((b, t, length)) < 0.7
    keep[:, :, 0] = True
    mask = ms.Tensor(np.where(keep, 0.0, -1e30).astype(np.float32))
    ours = flash_attention(q, k, v, mask).astype(ms.float32).asnumpy()
    ref = math_attention(q, k, v, mask).astype(ms.float32).asnumpy()
    np.testing.assert_allclose(ours, ref, atol=2e-3)
    assert math.isfinite(float(np.abs(ours).max()))


@pytest.mark.skipif(not ON_ASCEND, reason="FlashAttentionScore needs an Ascend (Atlas A2) device; none here")
def test_flash_on_ascend_matches_math() -> None:
    from zoo_mindspore.backend import load_model

    config = tiny("34b", n_layers=2)
    flash = load_model(config, None, device="ascend", dtype="fp16", attention="flash", seed=3)
    plain = load_model(config, None, device="ascend", dtype="fp16", attention="math", seed=3)
    ids = np.random.default_rng(5).integers(0, config.vocab_size, (2, 12))
    mask = np.ones_like(ids)
    mask[1, :4] = 0
    for lm in (flash, plain):
        lm.start(2, 20)
    np.testing.assert_allclose(flash.prefill(ids, mask), plain.prefill(ids, mask), atol=2e-2)
    nxt = np.array([1, 2])
    np.testing.assert_allclose(flash.decode(nxt), plain.decode(nxt), atol=2e-2)
