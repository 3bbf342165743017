"""AdamW with fp32 state, parameter groups and the warmup + cosine schedule.

``FP32StateAdamW`` mirrors MindFormers' ``FP32StateAdamWeightDecay``: the
moments live in fp32 even when the weights are bf16/fp16, the update is
computed in fp32 and only then cast to the weight's dtype. For fp32 weights
it is exactly ``torch.optim.AdamW`` (decoupled weight decay, bias
correction), which the tests check.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices and embeddings; never norms or biases (1-D parameters)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or name.endswith(".bias") or "norm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


class FP32StateAdamW(torch.optim.Optimizer):
    """AdamW whose moments (and update arithmetic) are fp32 whatever the weight dtype."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-5, betas: tuple[float, float] = (0.9, 0.95),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32, memory_format=torch.preserve_format)
                state["step"] += 1
                step = float(state["step"])
                grad = p.grad.float()
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.lerp_(grad, 1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                bias1 = 1 - beta1**step
                bias2 = 1 - beta2**step
                denom = (v.sqrt() / math.sqrt(bias2)).add_(eps)
                master = p.float()
                master.mul_(1 - lr * wd)
                master.addcdiv_(m, denom, value=-lr / bias1)
                p.copy_(master)
        return loss


    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Like the base class, but keep the moments fp32 (the base casts them to the weight dtype)."""
        saved = state_dict["state"]
        super().load_state_dict(state_dict)
        params = [p for group in self.param_groups for p in group["params"]]
        for index, p in enumerate(params):
            if index in saved:
                for key in ("exp_avg", "exp_avg_sq"):
                    self.state[p][key] = saved[index][key].to(device=p.device, dtype=torch.float32).clone()


def build_optimizer(model: nn.Module, optimizer_cfg: Any, learning_rate: float) -> torch.optim.Optimizer:
    """The optimizer a config's ``optimizer`` section asks for."""
    groups = param_groups(model, optimizer_cfg.weight_decay)
    return FP32StateAdamW(groups, lr=learning_rate, betas=(optimizer_cfg.beta1, optimizer_cfg.beta2),
                          eps=optimizer_cfg.eps)


class WarmupCosineSchedule:
    """Linear warmup to ``lr`` then cosine decay to ``lr_end`` over ``total`` steps.

    ``constant=True`` holds ``lr`` after warmup. The state is one integer,
    so resuming is exact.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, lr: float, lr_end: float, warmup: int, total: int,
                 constant: bool = False) -> None:
        self.optimizer, self.lr, self.lr_end = optimizer, lr, lr_end
        self.warmup, self.total, self.constant = warmup, max(total, 1), constant
        self.step_count = 0
        self._apply()

    def lr_at(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (0-based)."""
        if self.warmup and step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        if self.constant:
            return self.lr
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.lr_end + (self.lr - self.lr_end) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step_count)

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    @property
    def current(self) -> float:
        return self.lr_at(self.step_count)

    def state_dict(self) -> dict[str, Any]:
        return {"step_count": self.step_count, "lr": self.lr, "lr_end": self.lr_end, "warmup": self.warmup,
                "total": self.total, "constant": self.constant}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        self._apply()


def build_schedule(optimizer: torch.optim.Optimizer, lr_cfg: Any, total_steps: int) -> WarmupCosineSchedule:
    total = lr_cfg.total_steps if lr_cfg.total_steps > 0 else total_steps
    warmup = lr_cfg.warmup_steps if lr_cfg.warmup_steps is not None else int(total * lr_cfg.warmup_ratio)
    return WarmupCosineSchedule(optimizer, lr_cfg.learning_rate, lr_cfg.lr_end, warmup, total,
                                constant=lr_cfg.type == "ConstantWithWarmUpLR")
