"""The torch backend through the registry: LanguageModel protocol, attention choice, loading memory."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_testing import left_padded, random_model, shrink

from codellama_zoo.errors import BackendUnavailableError, UnknownNameError, UsageError
from codellama_zoo.registry import get_registry
from codellama_zoo.runtime import LanguageModel
from zoo_codellama.presets import ARCHITECTURES
from zoo_torch import checkpoints


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    model = random_model(shrink(ARCHITECTURES["34b"], n_layers=2), seed=8)
    return checkpoints.save_checkpoint(model.state_dict(), model.config, tmp_path / "tiny", "hf")


def test_backend_is_registered_and_loads_a_language_model(tiny_dir: Path) -> None:
    backend = get_registry().backends.get("torch")
    assert backend.is_available() and "cpu" in backend.devices()
    assert backend.load_model is not None
    lm = backend.load_model(None, tiny_dir, "cpu", "fp32", "auto")
    assert isinstance(lm, LanguageModel)
    assert (lm.backend, lm.device, lm.dtype, lm.attention) == ("torch", "cpu", "fp32", "sdpa")
    assert lm.config == checkpoints.read_config(tiny_dir)


def test_prefill_decode_equal_full_recompute(tiny_dir: Path) -> None:
    backend = get_registry().backends.get("torch")
    lm = backend.load_model(None, tiny_dir, "cpu", "fp32", "eager")  # type: ignore[misc]
    ids, mask = left_padded(lm.config.vocab_size, 3, 6, [0, 2, 5], seed=4)
    lm.start(3, 10)
    logits = lm.prefill(ids.numpy(), mask.numpy())
    assert logits.shape == (3, lm.config.vocab_size) and logits.dtype == np.float32
    seq, seq_mask = ids.numpy(), mask.numpy()
    for _ in range(4):
        nxt = logits.argmax(-1)
        seq = np.concatenate([seq, nxt[:, None]], 1)
        seq_mask = np.concatenate([seq_mask, np.ones((3, 1), dtype=seq_mask.dtype)], 1)
        logits = lm.decode(nxt)
        full = lm.logits(seq, seq_mask)[:, -1]
        np.testing.assert_allclose(logits, full, atol=1e-4, rtol=0)
    with pytest.raises(UsageError, match="KV cache holds 10 tokens"):
        lm.decode(nxt)
    lm.start(1, 6)  # reuses the (larger) cache and forgets the old tokens
    one = lm.prefill(ids[:1].numpy(), mask[:1].numpy())
    np.testing.assert_allclose(one, lm.logits(ids[:1].numpy())[:, -1], atol=1e-4, rtol=0)


def test_attention_auto_is_logged_and_errors_are_clear(tiny_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    from zoo_torch.runtime import load_model

    with caplog.at_level(logging.INFO, logger="zoo_torch"):
        lm = load_model(None, tiny_dir, device="cpu", dtype="fp32", attention="auto")
    assert lm.attention == "sdpa"
    assert "attention: auto -> sdpa on cpu" in caplog.text and "flash (unavailable)" in caplog.text
    with pytest.raises(BackendUnavailableError, match="attention 'flash' is unavailable on 'cpu': flash-attn runs"):
        load_model(None, tiny_dir, device="cpu", attention="flash")
    with pytest.raises(UnknownNameError, match="unknown attention implementation 'sdpaa'; did you mean 'sdpa'"):
        load_model(None, tiny_dir, device="cpu", attention="sdpaa")
    with pytest.raises(UsageError, match="unknown dtype 'int3'"):
        load_model(None, tiny_dir, device="cpu", dtype="int3")


def test_random_weights_without_a_directory() -> None:
    from zoo_torch.runtime import load_model

    cfg = shrink(ARCHITECTURES["7b"], n_layers=1)
    a = load_model(cfg, None, device="cpu", dtype="bf16", seed=3)
    b = load_model(cfg, None, device="cpu", dtype="bf16", seed=3)
    assert a.model.output.weight.dtype == torch.bfloat16
    ids = np.array([[5, 6, 7]])
    a.start(1, 3)
    b.start(1, 3)
    np.testing.assert_array_equal(a.prefill(ids, np.ones_like(ids)), b.prefill(ids, np.ones_like(ids)))


def test_loading_is_memory_mapped_and_peak_rss_stays_near_the_weights(tmp_path: Path) -> None:
    """A ~160 MB checkpoint: peak RSS after load + one forward stays near the weights' size
    (memory-mapped formats: within 1.1x; Meta's 2 shards, concatenated tensor by tensor: 1x plus the
    largest tensor, the embedding, which is 40% of this tiny model, so within 1.6x)."""
    import attrs

    from zoo_torch.bench import measure_load

    cfg = attrs.evolve(shrink(ARCHITECTURES["7b"], n_layers=2, head_dim=128), dim=512, n_heads=4)
    model = random_model(cfg)
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert size > 80e6
    for fmt in ("zoo", "hf", "meta"):
        checkpoints.save_checkpoint(model.state_dict(), cfg, tmp_path / fmt, fmt, shards=2 if fmt == "meta" else None)
    del model
    for fmt in ("zoo", "hf", "meta"):
        stats = measure_load(str(tmp_path / fmt))
        assert stats["weights_bytes"] == size
        assert stats["forward_ratio"] < (1.6 if fmt == "meta" else 1.1), (fmt, stats)
        if fmt != "meta":  # memory-mapped: nothing is read before it is used
            assert stats["load_ratio"] < 0.5, (fmt, stats)
