"""The MindSpore Llama against transformers' LlamaForCausalLM (and the PyTorch backend) on random weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mindspore_testing import (  # sets GLOG_v before MindSpore is imported
    greedy,
    hf_model,
    hf_to_canonical,
    left_padded_batch,
    tiny,
)

pytest.importorskip("mindspore")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


from zoo_codellama.presets import ARCHITECTURES  # noqa: E402

pytestmark = pytest.mark.mindspore
TOL = 1e-4
LENGTHS = [13, 9]  # a left-padded batch of two
DECODE_STEPS = 4
GREEDY_STEPS = 32


class Case:
    """One preset shape: the HF reference, its weights on disk, the MindSpore model loaded from them."""

    def __init__(self, size: str, folder: Path) -> None:
        from zoo_mindspore import backend, checkpoints

        self.size = size
        self.config = tiny(size)
        self.hf = hf_model(self.config, seed=len(size))
        self.state = hf_to_canonical(self.hf.state_dict(), self.config.n_layers)
        checkpoints.save_ckpt(self.state, self.config, folder)
        self.folder = folder
        self.lm = backend.load_model(self.config, folder, device="cpu", dtype="fp32", attention="auto")

    def hf_last_logits(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        positions = np.clip(np.cumsum(mask, 1) - 1, 0, None)
        with torch.no_grad():
            out = self.hf(
                torch.tensor(ids), attention_mask=torch.tensor(mask), position_ids=torch.tensor(positions)
            ).logits
        return out[:, -1].numpy()


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def case(request: Any, tmp_path_factory: pytest.TempPathFactory) -> Case:
    from codellama_zoo import plugins

    plugins.set_plugin_manager(None)
    return Case(request.param, tmp_path_factory.mktemp(f"ms-{request.param}"))


def test_shapes_cover_mha_and_gqa() -> None:
    ratios = {size: tiny(size).n_rep for size in ARCHITECTURES}
    assert ratios["7b"] == ratios["13b"] == 1
    assert ratios["34b"] == ratios["70b"] == 8
    assert tiny("70b").ffn_hidden != tiny("34b").ffn_hidden  # ffn_dim_multiplier 1.3 vs 1.0 survives


def test_full_causal_logits_match_transformers(case: Case) -> None:
    import mindspore as ms

    rng = np.random.default_rng(1)
    ids = rng.integers(0, case.config.vocab_size, (2, 11))
    ours = case.lm.model(ms.Tensor(ids.astype(np.int32))).asnumpy()
    with torch.no_grad():
        ref = case.hf(torch.tensor(ids)).logits.numpy()
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=TOL, rtol=0)


def test_prefill_and_cached_decode_match_transformers(case: Case) -> None:
    rng = np.random.default_rng(2)
    ids, mask = left_padded_batch(rng, case.config.vocab_size, LENGTHS)
    case.lm.start(2, ids.shape[1] + DECODE_STEPS)
    logits = case.lm.prefill(ids, mask)
    assert logits.shape == (2, case.config.vocab_size) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, case.hf_last_logits(ids, mask), atol=TOL, rtol=0)
    for _ in range(DECODE_STEPS):
        nxt = logits.argmax(-1)
        ids = np.concatenate([ids, nxt[:, None]], 1)
        mask = np.concatenate([mask, np.ones((2, 1), mask.dtype)], 1)
        logits = case.lm.decode(nxt)
        np.testing.assert_allclose(logits, case.hf_last_logits(ids, mask), atol=TOL, rtol=0)


def test_greedy_32_tokens_match_transformers(case: Case) -> None:
    """Teacher-forced check: transformers' argmax after every prefix of our sequence is our next token."""
    rng = np.random.default_rng(3)
    ids, mask = left_padded_batch(rng, case.config.vocab_size, LENGTHS)
    ours = greedy(case.lm, ids, mask, GREEDY_STEPS)
    seq = np.concatenate([ids, ours], 1)
    seq_mask = np.concatenate([mask, np.ones_like(ours)], 1)
    positions = np.clip(np.cumsum(seq_mask, 1) - 1, 0, None)
    with torch.no_grad():
        logits = case.hf(
            torch.tensor(seq), attention_mask=torch.tensor(seq_mask), position_ids=torch.tensor(positions)
        ).logits.numpy()
    width = ids.shape[1]
    np.testing.assert_array_equal(logits[:, width - 1 : -1].argmax(-1), ours)


def _torch_backend(case: Case) -> Any:
    from codellama_zoo.registry import get_registry

    registry = get_registry()
    if "torch" not in registry.backends.names():
        pytest.skip("the torch backend is not registered in this checkout")
    spec = registry.backends.get("torch")
    if not spec.is_available() or spec.load_model is None:
        pytest.skip(f"the torch backend is unavailable: {spec.unavailable_reason()}")
    return spec.load_model(case.config, case.folder, "cpu", "fp32", "auto")


def test_matches_pytorch_backend_logits_and_greedy(case: Case) -> None:
    torch_lm = _torch_backend(case)
    rng = np.random.default_rng(4)
    ids, mask = left_padded_batch(rng, case.config.vocab_size, LENGTHS)
    for lm in (case.lm, torch_lm):
        lm.start(2, ids.shape[1] + 2)
    ours, theirs = case.lm.prefill(ids, mask), torch_lm.prefill(ids, mask)
    np.testing.assert_allclose(ours, theirs, atol=TOL, rtol=0)
    nxt = ours.argmax(-1)
    np.testing.assert_allclose(case.lm.decode(nxt), torch_lm.decode(nxt), atol=TOL, rtol=0)
    np.testing.assert_array_equal(greedy(case.lm, ids, mask, GREEDY_STEPS), greedy(torch_lm, ids, mask, GREEDY_STEPS))
