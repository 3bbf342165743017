"""The MindSpore LanguageModel: contract, shape buckets, PyNative debug path, fp16, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mindspore_testing import left_padded_batch, tiny  # sets GLOG_v before MindSpore is imported

pytest.importorskip("mindspore")

from codellama_zoo.errors import UsageError  # noqa: E402
from codellama_zoo.runtime import LanguageModel  # noqa: E402

pytestmark = pytest.mark.mindspore
CONFIG = tiny("34b", n_layers=1)


def run(lm: LanguageModel, ids: np.ndarray, mask: np.ndarray, steps: int) -> list[np.ndarray]:
    lm.start(ids.shape[0], ids.shape[1] + steps)
    out = [lm.prefill(ids, mask)]
    for _ in range(steps):
        out.append(lm.decode(out[-1].argmax(-1)))
    return out


def test_pynative_debug_path_and_fp16_agree_with_compiled_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    from zoo_mindspore.backend import PYNATIVE_ENV, load_model

    ids, mask = left_padded_batch(np.random.default_rng(0), CONFIG.vocab_size, [7, 4])
    compiled = load_model(CONFIG, None, device="cpu", dtype="fp32", seed=1)
    assert isinstance(compiled, LanguageModel) and compiled.compiled
    monkeypatch.setenv(PYNATIVE_ENV, "1")
    eager = load_model(CONFIG, None, device="cpu", dtype="fp32", seed=1)
    assert not eager.compiled
    monkeypatch.delenv(PYNATIVE_ENV)
    half = load_model(CONFIG, None, device="cpu", dtype="fp16", seed=1)
    reference = run(compiled, ids, mask, 3)
    for ours, ref in zip(run(eager, ids, mask, 3), reference, strict=True):
        np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)
    for ours, ref in zip(run(half, ids, mask, 3), reference, strict=True):
        assert ours.dtype == np.float32
        np.testing.assert_allclose(ours, ref, atol=2e-2, rtol=0)


def test_prefill_in_two_chunks_equals_one_prefill() -> None:
    from zoo_mindspore.backend import load_model

    lm = load_model(CONFIG, None, device="cpu", dtype="fp32", seed=2)
    ids = np.random.default_rng(1).integers(3, CONFIG.vocab_size, (2, 9))
    ones = np.ones_like(ids)
    lm.start(2, 12)
    whole = lm.prefill(ids, ones)
    after = lm.decode(whole.argmax(-1))
    lm.start(2, 12)
    lm.prefill(ids[:, :5], ones[:, :5])
    chunked = lm.prefill(ids[:, 5:], ones[:, 5:])
    np.testing.assert_allclose(chunked, whole, atol=1e-5, rtol=0)
    np.testing.assert_allclose(lm.decode(whole.argmax(-1)), after, atol=1e-5, rtol=0)


def test_shapes_are_bucketed_so_graphs_are_reused() -> None:
    from zoo_mindspore.runner import cache_length, prefill_bucket

    assert [prefill_bucket(t) for t in (1, 16, 17, 100)] == [16, 16, 32, 128]
    assert cache_length(20) == cache_length(128) == 128 and cache_length(129) == 256


def test_contract_errors_are_clear() -> None:
    from zoo_mindspore.backend import load_model

    lm = load_model(CONFIG, None, device="cpu", dtype="fp32")
    with pytest.raises(UsageError, match="start"):
        lm.prefill(np.ones((1, 3), np.int64), np.ones((1, 3)))
    lm.start(1, 4)
    with pytest.raises(UsageError, match="prefill"):
        lm.decode(np.array([1]))
    with pytest.raises(UsageError, match=r"shape \(1, T\)"):
        lm.prefill(np.ones((2, 3), np.int64), np.ones((2, 3)))
    lm.prefill(np.ones((1, 3), np.int64), np.ones((1, 3)))
    lm.decode(np.array([1]))
    with pytest.raises(UsageError, match="full"):
        lm.decode(np.array([1]))
    with pytest.raises(UsageError, match="max_seq_len"):
        lm.start(1, CONFIG.max_seq_len + 1)


def test_missing_or_mismatched_weights_are_clear(tmp_path: Path) -> None:
    from codellama_zoo.errors import WeightsError
    from zoo_mindspore import checkpoints, weights
    from zoo_mindspore.backend import load_model
    from zoo_mindspore.model import Transformer

    with pytest.raises(WeightsError, match="does not exist"):
        load_model(CONFIG, tmp_path / "nope")
    other = tiny("7b", n_layers=1)
    checkpoints.save_ckpt(weights.state_dict(Transformer(other)), other, tmp_path / "other")
    with pytest.raises(WeightsError, match="shape"):
        load_model(CONFIG, tmp_path / "other")
