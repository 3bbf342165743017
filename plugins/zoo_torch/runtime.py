"""Building the torch model from a checkpoint, and the :class:`LanguageModel` that drives it.

``build_model`` creates the :class:`~zoo_torch.model.Transformer` on the meta
device (no memory), then ``load_state_dict(assign=True)`` puts the checkpoint's
memory-mapped tensors in place: on CPU, with a checkpoint already in the target
dtype, the weights are never copied. ``TorchLanguageModel`` implements
:class:`codellama_zoo.runtime.LanguageModel` over a static KV cache.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codellama_zoo.errors import BackendUnavailableError, UsageError, WeightsError
from codellama_zoo.specs import LlamaConfig
from zoo_torch.checkpoints import check_state_dict, load_state_dict, torch_dtype
from zoo_torch.decode import DecodePlan
from zoo_torch.model import Transformer

log = logging.getLogger("zoo_torch")


def resolve_device(device: str | None) -> str:
    """``auto`` -> cuda when available, else mps, else cpu; checks explicit choices."""
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    kind = str(device).split(":", 1)[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(f"device {device!r} asked for, but torch sees no CUDA GPU; use --device cpu")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise BackendUnavailableError(f"device {device!r} asked for, but MPS is not available; use --device cpu")
    if kind not in ("cpu", "cuda", "mps", "xpu", "meta"):
        raise UsageError(f"unknown device {device!r}; allowed: auto, cpu, cuda, cuda:N, mps")
    return str(device)


def resolve_dtype(dtype: str | None, device: str) -> str:
    """``auto`` -> bf16 on CUDA (fp16 on MPS), fp32 on CPU."""
    if dtype in (None, "auto"):
        kind = device.split(":", 1)[0]
        return "bf16" if kind == "cuda" else "fp16" if kind == "mps" else "fp32"
    if dtype not in ("fp32", "bf16", "fp16"):
        raise UsageError(f"unknown dtype {dtype!r}; allowed: auto, fp32, bf16, fp16")
    return dtype


def _rss_bytes() -> int:
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def build_model(config: LlamaConfig | None, weights_dir: str | Path | None, device: str = "cpu",
                dtype: str = "fp32", state_dict: dict[str, Any] | None = None, seed: int | None = None) -> Transformer:
    """The Transformer with weights from ``weights_dir`` (or ``state_dict``, or random with ``seed``)."""
    tdtype = torch_dtype(dtype)
    if weights_dir is None and state_dict is None:
        if config is None:
            raise UsageError("build_model needs a config when no weights are given")
        model = Transformer(config, device=device, dtype=tdtype)
        gen = torch.Generator().manual_seed(seed if seed is not None else 0)
        model.init_weights(generator=gen)
        return model.eval()
    if state_dict is None:
        state_dict, config = load_state_dict(weights_dir, config, dtype=dtype)  # type: ignore[arg-type]
    else:
        if config is None:
            raise UsageError("build_model needs a config with a state_dict")
        check_state_dict(state_dict, config, "the given state dict")
        state_dict = {k: (v.to(tdtype) if v.is_floating_point() else v) for k, v in state_dict.items()}
    assert config is not None
    with torch.device("meta"):
        model = Transformer(config, dtype=tdtype)
    if device != "cpu":
        state_dict = {k: v.to(device) for k, v in state_dict.items()}
    try:
        model.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as exc:  # check_state_dict catches these first; keep the message one line
        raise WeightsError(f"cannot load weights from {weights_dir}: {str(exc).splitlines()[0]}") from None
    model.init_rope(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


class TorchLanguageModel:
    """:class:`codellama_zoo.runtime.LanguageModel` on a :class:`Transformer` with a static KV cache."""

    backend = "torch"

    def __init__(self, model: Transformer, device: str, dtype: str, attention: str, compile: bool = False) -> None:
        self.model = model
        self.config = model.config
        self.device = device
        self.dtype = dtype
        self.attention = attention
        self.compiled = compile
        self.load_stats: dict[str, Any] = {}
        self._cur = 0  # next free cache slot
        self._batch = 0
        self._plan: DecodePlan | None = None  # fused decode weights, built at the first decode
        self.fused_decode = True  # False: decode through the model's own forward (sharded models)
        self._decode_fn: Any = None

    # -- LanguageModel ------------------------------------------------------
    def start(self, batch_size: int, max_len: int) -> None:
        if batch_size <= 0 or max_len <= 0:
            raise UsageError(f"start() needs a positive batch size and length, got {batch_size} and {max_len}")
        self.model.setup_caches(batch_size, max_len)
        if self._plan is not None:
            self._plan.ensure_rope(self.model.max_seq)
        self._cur = 0
        self._batch = batch_size

    def _check_room(self, b: int, t: int) -> None:
        if not self.model.max_batch:
            raise UsageError("call start(batch_size, max_len) before prefill/decode")
        if b > self.model.max_batch:
            raise UsageError(f"batch of {b} rows is larger than start()'s batch size {self.model.max_batch}")
        if self._cur + t > self.model.max_seq:
            raise UsageError(
                f"the KV cache holds {self.model.max_seq} tokens; {self._cur} used, {t} more do not fit "
                "(pass a larger max_len to start())"
            )

    @torch.inference_mode()
    def prefill(self, ids: np.ndarray, attention_mask: np.ndarray | None = None) -> np.ndarray:
        tokens = torch.as_tensor(np.asarray(ids), dtype=torch.long).to(self.device)
        if tokens.dim() != 2:
            raise UsageError(f"prefill expects ids of shape (batch, length), got {tuple(tokens.shape)}")
        b, t = tokens.shape
        self._check_room(b, t)
        mask = None if attention_mask is None else torch.as_tensor(np.asarray(attention_mask)).to(self.device)
        input_pos = self.model.slots[self._cur:self._cur + t]
        logits = self.model(tokens, mask, input_pos=input_pos, kv_len=self._cur + t, last_only=True)
        self._cur += t
        self._batch = b
        return logits[:, -1].cpu().numpy()

    @torch.inference_mode()
    def decode(self, next_ids: np.ndarray) -> np.ndarray:
        tokens = torch.as_tensor(np.asarray(next_ids), dtype=torch.long).reshape(-1, 1).to(self.device)
        self._check_room(tokens.shape[0], 1)
        logits = self._decode_tensor(tokens)
        return logits.cpu().numpy()

    # -- torch-side fast paths ---------------------------------------------
    def _decoder(self) -> Any:
        """The decode step (built on first use: fusing weights is wasted on prefill-only use)."""
        if self._decode_fn is None and not self.fused_decode:
            # A model whose modules another plugin transformed (e.g. tensor-parallel DTensor shards)
            # keeps its own forward: the lean step would re-pack weights it does not own.
            self._decode_fn = self._module_step
        if self._decode_fn is None:
            self._plan = DecodePlan(self.model)
            self._plan.ensure_rope(self.model.max_seq)
            self._decode_fn = self._plan.step
            if self.compiled:
                # CUDA: CUDA graphs over the static cache remove the per-token launch overhead. CPU: inductor
                # fuses the element-wise ops of the whole step into a few kernels.
                mode = "reduce-overhead" if self.device.startswith("cuda") else None
                self._decode_fn = torch.compile(self._plan.step, dynamic=False, fullgraph=True, mode=mode)
        return self._decode_fn

    def _module_step(self, tokens: torch.Tensor, input_pos: torch.Tensor, kv_len: int | None) -> torch.Tensor:
        return self.model(tokens, None, input_pos=input_pos, kv_len=kv_len)[:, -1]

    def _decode_tensor(self, tokens: torch.Tensor) -> torch.Tensor:
        """Decode one token per row, ``tokens`` (B, 1) on the device; logits (B, V) fp32 on the device."""
        input_pos = self.model.slots[self._cur:self._cur + 1]
        # Compiled: attend over the whole static cache (fixed shapes); eager: only the used slots.
        kv_len = None if self.compiled else self._cur + 1
        logits = self._decoder()(tokens, input_pos, kv_len)
        self._cur += 1
        return logits

    @torch.inference_mode()
    def generate_greedy(self, ids: np.ndarray, attention_mask: np.ndarray | None, max_new_tokens: int) -> np.ndarray:
        """Greedy tokens (B, max_new_tokens), argmax on the device (no stop tokens): the benchmark's hot path."""
        b, t = np.asarray(ids).shape
        self.start(b, t + max_new_tokens)
        logits = torch.as_tensor(self.prefill(ids, attention_mask)).to(self.device)
        out = torch.empty(b, max_new_tokens, dtype=torch.long, device=self.device)
        nxt = logits.argmax(-1)
        for i in range(max_new_tokens):
            out[:, i] = nxt
            if i + 1 < max_new_tokens:
                nxt = self._decode_tensor(nxt.view(b, 1)).argmax(-1)
        return out.cpu().numpy()

    @torch.inference_mode()
    def logits(self, ids: np.ndarray, attention_mask: np.ndarray | None = None) -> np.ndarray:
        """Full-sequence fp32 logits (B, T, V) without the cache (scoring, tests)."""
        tokens = torch.as_tensor(np.asarray(ids), dtype=torch.long).to(self.device)
        mask = None if attention_mask is None else torch.as_tensor(np.asarray(attention_mask)).to(self.device)
        return self.model(tokens, mask).cpu().numpy()

    def __repr__(self) -> str:
        c = self.config
        return (f"TorchLanguageModel(dim={c.dim}, layers={c.n_layers}, device={self.device!r}, "
                f"dtype={self.dtype!r}, attention={self.attention!r}, compiled={self.compiled})")


def load_model(config: LlamaConfig | None, weights_dir: str | Path | None, device: str = "auto",
               dtype: str = "auto", attention: str = "auto", *, compile: bool = False,
               seed: int | None = None, state_dict: dict[str, Any] | None = None) -> TorchLanguageModel:
    """The torch backend's ``BackendSpec.load_model``: config + weights directory -> LanguageModel.

    ``config`` None reads the architecture from the checkpoint; ``weights_dir`` None
    (and no ``state_dict``) gives random weights (``seed``), for tests and benchmarks.
    Peak RSS while loading and the weights' size are in ``load_stats``.
    """
    from zoo_torch.attention import resolve_attention

    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    spec = resolve_attention(attention, dev)
    rss0 = _rss_bytes()
    t0 = time.perf_counter()
    model = build_model(config, weights_dir, dev, dt, state_dict=state_dict, seed=seed)
    model.set_attention(spec.factory() if spec.factory else spec.name, spec.name)
    elapsed = time.perf_counter() - t0
    lm = TorchLanguageModel(model, dev, dt, spec.name, compile=compile)
    nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    lm.load_stats = {"seconds": elapsed, "weights_bytes": nbytes, "rss_before": rss0, "rss_after": _rss_bytes()}
    log.info("torch model loaded in %.2fs on %s (%s, attention=%s)", elapsed, dev, dt, spec.name)
    return lm
