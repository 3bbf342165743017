"""Token cross-entropy for training, written with ops that have CPU kernels (graph-mode safe)."""

from __future__ import annotations

from mindspore import Tensor, ops

IGNORE_INDEX = -100


def token_loss_sum(logits: Tensor, targets: Tensor) -> Tensor:
    """Sum of cross-entropy over targets that are not IGNORE_INDEX; logits (B,T,V) fp32, targets (B,T)."""
    valid = targets != IGNORE_INDEX
    safe = ops.where(valid, targets, ops.zeros_like(targets))
    logp = ops.log_softmax(logits, -1)
    picked = ops.gather_elements(logp, -1, safe.expand_dims(-1)).squeeze(-1)
    return -(picked * valid.astype(logp.dtype)).sum()
