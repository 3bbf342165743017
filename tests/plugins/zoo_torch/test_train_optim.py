"""The optimizer (fp32 state AdamW), its parameter groups and the warmup + cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from codellama_zoo.training import LrScheduleConfig
from zoo_torch.train_optim import FP32StateAdamW, WarmupCosineSchedule, build_schedule, param_groups


class _Net(nn.Module):
    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.emb = nn.Embedding(11, 6, dtype=dtype)
        self.proj = nn.Linear(6, 5, bias=True, dtype=dtype)
        self.attention_norm = nn.Module()
        self.attention_norm.weight = nn.Parameter(torch.ones(6, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.emb(x) * self.attention_norm.weight).float()


def _loss(model: nn.Module, step: int) -> torch.Tensor:
    x = torch.arange(step, step + 7) % 11
    return model(x).pow(2).mean()


def test_equals_torch_adamw_for_fp32_weights() -> None:
    torch.manual_seed(0)
    ours, ref = _Net(), _Net()
    ref.load_state_dict(ours.state_dict())
    opt = FP32StateAdamW(param_groups(ours, 0.1), lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    ref_opt = torch.optim.AdamW(param_groups(ref, 0.1), lr=1e-2, betas=(0.9, 0.95), eps=1e-8, foreach=False)
    for step in range(6):
        for model, optimizer in ((ours, opt), (ref, ref_opt)):
            optimizer.zero_grad()
            _loss(model, step).backward()
            optimizer.step()
    for (name, a), b in zip(ours.state_dict().items(), ref.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)


def test_decay_skips_norms_and_biases() -> None:
    net = _Net()
    decay, no_decay = param_groups(net, 0.1)
    names = {id(p): n for n, p in net.named_parameters()}
    assert sorted(names[id(p)] for p in decay["params"]) == ["emb.weight", "proj.weight"]
    assert sorted(names[id(p)] for p in no_decay["params"]) == ["attention_norm.weight", "proj.bias"]
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.1


def test_bf16_weights_keep_fp32_state_and_track_fp32_training() -> None:
    torch.manual_seed(0)
    low, full = _Net(torch.bfloat16), _Net()
    full.load_state_dict({k: v.float() for k, v in low.state_dict().items()})
    low_opt = FP32StateAdamW(param_groups(low, 0.0), lr=1e-2)
    full_opt = FP32StateAdamW(param_groups(full, 0.0), lr=1e-2)
    for step in range(5):
        for model, optimizer in ((low, low_opt), (full, full_opt)):
            optimizer.zero_grad()
            _loss(model, step).backward()
            optimizer.step()
    for p in low.parameters():
        assert p.dtype == torch.bfloat16
        assert low_opt.state[p]["exp_avg"].dtype == torch.float32
        assert low_opt.state[p]["exp_avg_sq"].dtype == torch.float32
    for a, b in zip(low.parameters(), full.parameters(), strict=True):
        torch.testing.assert_close(a.float(), b, rtol=2e-2, atol=2e-2)
    # reloading keeps the moments in fp32 (torch's base class would cast them to bf16)
    state = low_opt.state_dict()
    again = FP32StateAdamW(param_groups(low, 0.0), lr=1e-2)
    again.load_state_dict(state)
    for p in low.parameters():
        assert again.state[p]["exp_avg"].dtype == torch.float32
        assert torch.equal(again.state[p]["exp_avg_sq"], low_opt.state[p]["exp_avg_sq"])


def test_warmup_then_cosine_to_lr_end() -> None:
    opt = FP32StateAdamW([nn.Parameter(torch.zeros(1))], lr=0.0)
    sched = WarmupCosineSchedule(opt, lr=1.0, lr_end=0.1, warmup=4, total=14)
    lrs = [sched.lr_at(s) for s in range(14)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert lrs[4] == pytest.approx(1.0)
    assert lrs[9] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert sched.lr_at(14) == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))
    assert opt.param_groups[0]["lr"] == 0.25
    sched.step()
    assert opt.param_groups[0]["lr"] == 0.5
    resumed = WarmupCosineSchedule(opt, lr=1.0, lr_end=0.1, warmup=4, total=14)
    resumed.load_state_dict(sched.state_dict())
    assert resumed.current == sched.current == 0.5


def test_schedule_from_config_uses_the_run_length_for_minus_one() -> None:
    opt = FP32StateAdamW([nn.Parameter(torch.zeros(1))], lr=0.0)
    sched = build_schedule(opt, LrScheduleConfig(learning_rate=1e-3, warmup_ratio=0.03, total_steps=-1), 1000)
    assert (sched.total, sched.warmup) == (1000, 30)
    fixed = build_schedule(opt, LrScheduleConfig(learning_rate=1e-3, warmup_steps=5, total_steps=50), 1000)
    assert (fixed.total, fixed.warmup) == (50, 5)
