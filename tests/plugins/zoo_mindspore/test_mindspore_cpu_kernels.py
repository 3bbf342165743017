"""The fused CPU decode kernels: each op against numpy, the whole decode against MindSpore's operators, fallbacks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mindspore_testing import left_padded_batch, tiny  # sets GLOG_v before MindSpore is imported

pytest.importorskip("mindspore")

from zoo_mindspore import cpu_kernels  # noqa: E402

pytestmark = [
    pytest.mark.mindspore,
    pytest.mark.skipif(cpu_kernels.find_compiler() is None, reason="no C++ compiler here to build the CPU kernels"),
]
EPS = 1e-5


@pytest.fixture(scope="module")
def kernels() -> Any:
    from zoo_mindspore.backend import set_device

    set_device("cpu")
    loaded = cpu_kernels.load_kernels(threads=1)
    assert loaded is not None, "a compiler is present, so the kernels must build"
    return loaded


def run_op(op: Any, *arrays: np.ndarray) -> Any:
    """``op`` on numpy inputs inside a compiled graph, numpy outputs back."""
    import mindspore as ms
    from mindspore import nn

    class OneOp(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.op = op

        def construct(self, *inputs: Any) -> Any:
            return self.op(*inputs)

    out = ms.jit(OneOp().construct)(*[ms.Tensor(a) for a in arrays])
    return tuple(o.asnumpy() for o in out) if isinstance(out, tuple) else out.asnumpy()


def rms_norm(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    return g * (x / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + EPS)).astype(np.float32)


# odd sizes exercise the tails of the 4-row and vector loops
@pytest.mark.parametrize(("rows", "k", "n"), [(1, 37, 11), (3, 64, 96), (2, 256, 1408)])
def test_norm_project_and_project_add_match_numpy(kernels: Any, rows: int, k: int, n: int) -> None:
    rng = np.random.default_rng(k)
    x, g = rng.standard_normal((rows, k), np.float32), rng.standard_normal(k, np.float32)
    w, res = rng.standard_normal((n, k), np.float32), rng.standard_normal((rows, n), np.float32)
    eps = np.array([EPS], np.float32)
    np.testing.assert_allclose(run_op(kernels.norm_project, x, g, w, eps), rms_norm(x, g) @ w.T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(run_op(kernels.project_add, x, w, res), res + x @ w.T, rtol=1e-4, atol=1e-4)


def test_norm_swiglu_matches_numpy(kernels: Any) -> None:
    rng = np.random.default_rng(1)
    k, f = 48, 35
    x, g = rng.standard_normal((2, k), np.float32), rng.standard_normal(k, np.float32)
    w13 = rng.standard_normal((2 * f, k), np.float32)
    gate, up = np.split(rms_norm(x, g) @ w13.T, 2, -1)
    expected = gate / (1 + np.exp(-gate)) * up
    got = run_op(kernels.norm_swiglu, x, g, w13, np.array([EPS], np.float32))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_large_projections_split_over_threads_give_the_same_rows(kernels: Any) -> None:
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((1, 512), np.float32), rng.standard_normal((1030, 512), np.float32)  # 2^19 > 2^18
    zero = np.zeros((1, 1030), np.float32)
    one_thread = run_op(kernels.project_add, x, w, zero)
    kernels.set_threads(2)
    try:
        two_threads = run_op(kernels.project_add, x, w, zero)
    finally:
        kernels.set_threads(1)
    np.testing.assert_array_equal(two_threads, one_thread)  # same rows, same per-row arithmetic


def reference_decode_attention(qkv: np.ndarray, step: np.ndarray, inv_freq: np.ndarray, k_cache: np.ndarray,
                               v_cache: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """RoPE, cache write and grouped-query attention in numpy (mutates the caches like the kernel)."""
    b, kv, _, d = k_cache.shape
    h = qkv.shape[1] // d - 2 * kv
    heads = qkv.reshape(b, h + 2 * kv, d)
    angles = step[:, 1:2].astype(np.float32) * inv_freq  # (B, D/2)
    cos, sin = np.cos(np.concatenate([angles] * 2, -1)), np.sin(np.concatenate([angles] * 2, -1))
    rotated = heads[:, : h + kv] * cos[:, None] + np.concatenate(
        [-heads[:, : h + kv, d // 2 :], heads[:, : h + kv, : d // 2]], -1) * sin[:, None]
    out = np.zeros((b, h, d), np.float32)
    for row in range(b):
        slot = step[row, 2]
        k_cache[row, :, slot] = rotated[row, h:]
        v_cache[row, :, slot] = heads[row, h + kv :]
        for head in range(h):
            g = head // (h // kv)
            scores = k_cache[row, g] @ rotated[row, head] / np.sqrt(d) + mask[row]
            p = np.exp(scores - scores.max())
            out[row, head] = (p / p.sum()) @ v_cache[row, g]
    return out.reshape(b, h * d)


@pytest.mark.parametrize(("heads", "kv_heads"), [(4, 4), (8, 2)])
def test_decode_attention_writes_the_cache_in_place_and_matches_numpy(kernels: Any, heads: int, kv_heads: int) -> None:
    import mindspore as ms
    from mindspore import Parameter, Tensor, nn

    rng = np.random.default_rng(heads)
    b, length, d = 2, 24, 16
    k0 = rng.standard_normal((b, kv_heads, length, d), np.float32)
    v0 = rng.standard_normal((b, kv_heads, length, d), np.float32)
    qkv = rng.standard_normal((b, (heads + 2 * kv_heads) * d), np.float32)
    step = np.array([[5, 9, 11], [7, 3, 11]], np.int32)  # (token, position, slot) per row
    mask = np.full((b, length), -1e30, np.float32)
    mask[0, :12] = 0.0
    mask[1, 8:12] = 0.0  # a left-padded row: slots 0-7 hold padding
    inv_freq = (1.0 / 10000 ** (np.arange(0, d, 2) / d)).astype(np.float32)

    class Holder(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.k = Parameter(Tensor(k0.copy()), name="k", requires_grad=False)
            self.v = Parameter(Tensor(v0.copy()), name="v", requires_grad=False)

        def construct(self, qkv: Tensor, step: Tensor, inv_freq: Tensor, mask: Tensor) -> Tensor:
            return kernels.attention(qkv, step, inv_freq, self.k, self.v, mask)

    holder = Holder()
    got = ms.jit(holder.construct)(*[Tensor(a) for a in (qkv, step, inv_freq, mask)]).asnumpy()
    k_ref, v_ref = k0.copy(), v0.copy()
    expected = reference_decode_attention(qkv, step, inv_freq, k_ref, v_ref, mask)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(holder.k.asnumpy(), k_ref, rtol=1e-6, atol=1e-6)  # the new key at slot 11
    np.testing.assert_array_equal(holder.v.asnumpy(), v_ref)


def decode_run(lm: Any, ids: np.ndarray, mask: np.ndarray, steps: int) -> np.ndarray:
    lm.start(ids.shape[0], ids.shape[1] + steps)
    out = [lm.prefill(ids, mask)]
    for _ in range(steps):
        out.append(lm.decode(out[-1].argmax(-1)))
    return np.stack(out)


@pytest.mark.parametrize("size", ["7b", "34b"])  # multi-head and grouped-query
def test_kernel_decode_equals_operator_decode(size: str) -> None:
    from zoo_mindspore.backend import load_model
    from zoo_mindspore.runner import MindSporeLanguageModel

    config = tiny(size)
    lm = load_model(config, None, device="cpu", dtype="fp32", seed=4)
    assert lm.kernels is not None, "fp32 on CPU decodes through the kernels"
    ops_only = MindSporeLanguageModel(lm.model, config, device="cpu", dtype="fp32", attention=lm.attention)
    ids, mask = left_padded_batch(np.random.default_rng(5), config.vocab_size, [11, 6])
    ours, reference = decode_run(lm, ids, mask, 12), decode_run(ops_only, ids, mask, 12)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(ours.argmax(-1), reference.argmax(-1))


def test_disabled_or_unbuildable_kernels_fall_back_to_operators(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from zoo_mindspore.backend import load_model

    config = tiny("34b", n_layers=1)
    monkeypatch.setenv(cpu_kernels.ENABLE_ENV, "0")
    assert load_model(config, None, device="cpu", dtype="fp32").kernels is None
    monkeypatch.delenv(cpu_kernels.ENABLE_ENV)
    assert load_model(config, None, device="cpu", dtype="fp16").kernels is None  # fp32 only

    monkeypatch.setattr(cpu_kernels, "_cached", {})
    monkeypatch.setattr(cpu_kernels, "find_compiler", lambda: None)
    with caplog.at_level(logging.WARNING, logger="zoo_mindspore.cpu_kernels"):
        lm = load_model(config, None, device="cpu", dtype="fp32")
    assert lm.kernels is None
    assert "no C++ compiler found" in caplog.text and "MindSpore's own operators" in caplog.text
    ids, mask = left_padded_batch(np.random.default_rng(6), config.vocab_size, [5])
    assert np.isfinite(decode_run(lm, ids, mask, 2)).all()


def test_library_is_built_once_per_source_and_errors_name_the_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cpu_kernels.CACHE_ENV, str(tmp_path / "cache"))
    built = cpu_kernels.build_library()
    assert built.is_file() and built.is_relative_to(tmp_path / "cache")
    stamp = built.stat().st_mtime_ns
    assert cpu_kernels.build_library() == built and built.stat().st_mtime_ns == stamp  # cached, not rebuilt

    broken = tmp_path / "broken.cc"
    broken.write_text("int f( { return 0; }\n")
    with pytest.raises(cpu_kernels.KernelBuildError, match=r"compiling broken\.cc with .* failed: .*error"):
        cpu_kernels.build_library(broken)
    assert not list((tmp_path / "cache").glob("*/*.tmp")), "a failed build leaves no partial library"


def test_full_7b_width_one_layer_kernel_decode_equals_operator_decode() -> None:
    """Code Llama 7B's real widths (dim 4096, 32 heads of 128, ffn 11008), one layer, a small vocabulary."""
    import attrs

    from zoo_codellama.presets import ARCHITECTURES
    from zoo_mindspore.backend import load_model
    from zoo_mindspore.runner import MindSporeLanguageModel

    config = attrs.evolve(ARCHITECTURES["7b"], n_layers=1, vocab_size=512)
    lm = load_model(config, None, device="cpu", dtype="fp32", seed=7)
    assert lm.kernels is not None and config.head_dim == 128 and config.ffn_hidden == 11008
    ops_only = MindSporeLanguageModel(lm.model, config, device="cpu", dtype="fp32", attention=lm.attention)
    ids, mask = left_padded_batch(np.random.default_rng(8), config.vocab_size, [9, 5])
    ours, reference = decode_run(lm, ids, mask, 4), decode_run(ops_only, ids, mask, 4)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(ours.argmax(-1), reference.argmax(-1))


def test_only_small_batches_decode_through_the_kernels() -> None:
    from zoo_mindspore.backend import load_model

    config = tiny("34b", n_layers=1)
    lm = load_model(config, None, device="cpu", dtype="fp32", seed=9)
    lm.start(cpu_kernels.MAX_BATCH, 8)
    assert lm._decode_step is not None
    lm.start(cpu_kernels.MAX_BATCH + 1, 8)  # a GEMM beats the kernels' dot products from here
    assert lm._decode_step is None
    ids, mask = left_padded_batch(np.random.default_rng(10), config.vocab_size, [4] * (cpu_kernels.MAX_BATCH + 1))
    assert np.isfinite(decode_run(lm, ids, mask, 2)).all()


def test_unwritable_cache_falls_back_to_the_temporary_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv(cpu_kernels.CACHE_ENV, str(blocker / "kernels"))
    monkeypatch.setattr(cpu_kernels.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    built = cpu_kernels.build_library()
    assert built.is_file() and built.is_relative_to(tmp_path / "tmp")
