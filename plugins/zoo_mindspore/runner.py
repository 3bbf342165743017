"""The MindSpore :class:`~codellama_zoo.runtime.LanguageModel`: numpy in, numpy out.

The host side keeps, per row, the RoPE position and which cache slots hold
real tokens; the device side is a compiled :class:`CachedStep`. All rows
share the slot index (left padding), positions are per row, so padding never
shifts RoPE. Shapes are padded to a few buckets because every new input
shape costs a graph compilation (about 1.5 s on CPU):

* cache length: ``max_len`` rounded up to a multiple of :data:`LENGTH_STEP`;
* prefill length: a power of two (at least :data:`MIN_PREFILL`), padded on the left;
* decode: always one token.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from codellama_zoo.errors import UsageError
from codellama_zoo.specs import LlamaConfig

log = logging.getLogger(__name__)

LENGTH_STEP = 128
MIN_PREFILL = 16
MASK_MIN = -1e30
KEEP_CACHES = 2  # cached (batch, length) step graphs kept alive


def cache_length(max_len: int) -> int:
    return -(-max_len // LENGTH_STEP) * LENGTH_STEP


def prefill_bucket(t: int) -> int:
    bucket = MIN_PREFILL
    while bucket < t:
        bucket *= 2
    return bucket


class MindSporeLanguageModel:
    """A loaded Transformer plus its compiled prefill/decode steps."""

    backend = "mindspore"

    def __init__(
        self, model: Any, config: LlamaConfig, device: str, dtype: str, attention: str, compiled: bool = True,
        kernels: Any = None,
    ):
        self.model = model
        self.kernels = kernels  # zoo_mindspore.cpu_kernels.DecodeKernels: fused CPU decode, or None
        self.config = config
        self.device = device
        self.dtype = dtype
        self.attention = attention
        self.compiled = compiled
        self._steps: dict[tuple[int, int], tuple[Any, Any]] = {}
        self._step: Any = None
        self._decode_step: Any = None  # the fused-kernel decode of the current cache, if any
        self._batch = 0
        self._length = 0
        self._max_len = 0
        self._cur = 0  # next cache slot, shared by all rows
        self._used = 0  # tokens (padded prompt width + decoded) counted against max_len
        self._pos = np.zeros((0,), np.int32)  # next RoPE position per row
        self._valid = np.zeros((0, 0), bool)  # slots holding real tokens, per row

    # -- the LanguageModel contract ---------------------------------------------
    def start(self, batch_size: int, max_len: int) -> None:
        if batch_size <= 0 or max_len <= 0:
            raise UsageError(f"start() needs a positive batch size and length, got {batch_size} and {max_len}")
        if max_len > self.config.max_seq_len:
            raise UsageError(
                f"max_len={max_len} exceeds the model's max_seq_len={self.config.max_seq_len}; "
                "ask for fewer new tokens or a shorter prompt"
            )
        length = cache_length(max_len)
        key = (batch_size, length)
        if key not in self._steps:
            self._steps[key] = self._make_step(batch_size, length)
            while len(self._steps) > KEEP_CACHES:
                self._steps.pop(next(iter(self._steps)))
        self._step, self._decode_step = self._steps[key]
        self._batch, self._length, self._max_len = batch_size, length, max_len
        self._cur = self._used = 0
        self._pos = np.zeros((batch_size,), np.int32)
        self._valid = np.zeros((batch_size, length), bool)

    def prefill(self, ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        mask = np.asarray(attention_mask).astype(bool)
        if self._step is None:
            raise UsageError("call start(batch_size, max_len) before prefill()")
        if ids.ndim != 2 or ids.shape != mask.shape or ids.shape[0] != self._batch:
            raise UsageError(
                f"prefill expects ids and attention_mask of shape ({self._batch}, T); "
                f"got {ids.shape} and {mask.shape}"
            )
        t = ids.shape[1]
        if self._used + t > self._max_len:
            raise UsageError(f"prompt of {t} tokens does not fit the cache of {self._max_len} started with start()")
        if self._cur == 0:
            # extra left padding up to a bucket, using only the slots the later tokens do not need
            bucket = min(prefill_bucket(t), t + self._length - self._max_len)
        else:
            bucket = t  # a continuation chunk: exact shape
        pad = bucket - t
        tokens = np.zeros((self._batch, bucket), np.int32)
        tokens[:, pad:] = ids
        real = np.zeros((self._batch, bucket), bool)
        real[:, pad:] = mask
        slots = np.arange(self._cur, self._cur + bucket)
        positions = self._pos[:, None] + np.cumsum(real, axis=1) - 1
        positions = np.maximum(positions, 0).astype(np.int32)
        logits = self._run(tokens, positions, real, slots)
        self._pos = self._pos + real.sum(axis=1).astype(np.int32)
        self._used += t
        return logits

    def decode(self, next_ids: np.ndarray) -> np.ndarray:
        next_ids = np.asarray(next_ids).reshape(-1)
        if self._step is None or self._cur == 0:
            raise UsageError("call start() and prefill() before decode()")
        if next_ids.shape[0] != self._batch:
            raise UsageError(f"decode expects {self._batch} ids, one per row; got {next_ids.shape[0]}")
        if self._used >= self._max_len:
            raise UsageError(f"the cache of {self._max_len} tokens is full; start() with a larger max_len")
        if self._decode_step is not None:
            logits = self._run_decode_kernels(next_ids)
        else:
            tokens = next_ids.astype(np.int32)[:, None]
            positions = self._pos[:, None].astype(np.int32)
            real = np.ones((self._batch, 1), bool)
            logits = self._run(tokens, positions, real, np.array([self._cur]))
        self._pos = self._pos + 1
        self._used += 1
        return logits

    # -- internals ------------------------------------------------------------------
    def _make_step(self, batch: int, length: int) -> tuple[Any, Any]:
        from zoo_mindspore.compile import make_step
        from zoo_mindspore.cpu_kernels import MAX_BATCH

        kernels = self.kernels if batch <= MAX_BATCH else None  # larger batches decode faster through MatMul
        return make_step(self.model, batch, length, self.dtype, self.compiled, kernels)

    def _run(self, tokens: np.ndarray, positions: np.ndarray, real: np.ndarray, slots: np.ndarray) -> np.ndarray:
        import mindspore as ms

        b, t = tokens.shape
        end = int(slots[-1]) + 1
        if end > self._length:
            raise UsageError(f"{end} tokens do not fit the cache of {self._length} slots")
        self._valid[:, slots] = real
        if t == 1:  # decode: every valid slot is at or before this one
            keys = self._valid[:, None, :]
        else:
            keys = self._valid[:, None, :] & (np.arange(self._length)[None, None, :] <= slots[None, :, None])
        mask = np.where(keys, np.float32(0.0), np.float32(MASK_MIN))  # (B,T,L)
        kv = self.config.kv_heads
        index = np.empty((b, kv, t, 3), np.int32)
        index[..., 0] = np.arange(b)[:, None, None]
        index[..., 1] = np.arange(kv)[None, :, None]
        index[..., 2] = slots[None, None, :]
        # from_numpy wraps the arrays without Tensor()'s checks (~5x less host time per token); they are not
        # touched again before asnumpy() has waited for the step
        inputs = [ms.from_numpy(np.ascontiguousarray(a)) for a in (tokens, positions, mask, index)]
        out = self._step(*inputs)
        self._cur = end
        return out.asnumpy()

    def _run_decode_kernels(self, next_ids: np.ndarray) -> np.ndarray:
        """One token per row through the fused CPU kernels: (token, position, slot) rows plus the slot mask."""
        import mindspore as ms

        if self._cur >= self._length:
            raise UsageError(f"{self._cur + 1} tokens do not fit the cache of {self._length} slots")
        self._valid[:, self._cur] = True
        step = np.empty((self._batch, 3), np.int32)
        step[:, 0], step[:, 1], step[:, 2] = next_ids, self._pos, self._cur
        mask = np.where(self._valid, np.float32(0.0), np.float32(MASK_MIN))  # (B,L): valid slots are all <= this one
        out = self._decode_step(ms.from_numpy(step), ms.from_numpy(mask))
        self._cur += 1
        return out.asnumpy()
