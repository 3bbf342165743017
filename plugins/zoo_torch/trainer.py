"""The PyTorch trainer behind ``zoo train`` (``backend: torch``).

Seams for distributed training (issue 9 builds on them): :func:`build_model`
makes the model, ``transform_model`` (a hook argument of :func:`train`)
turns it into its parallel form before the optimizer is built,
:func:`build_optimizer_and_schedule` makes the optimizer and schedule, and
:func:`train_step` runs one optimizer step over its micro batches. Data is
sharded by ``torch.distributed`` rank; only rank 0 logs and checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from codellama_zoo.errors import ConfigError, UsageError
from codellama_zoo.training import TrainConfig, TrainResult
from zoo_torch import train_checkpoint
from zoo_torch.train_data import IGNORE_INDEX, BatchPlan, SampleArrays, rank_and_world
from zoo_torch.train_optim import WarmupCosineSchedule, build_optimizer, build_schedule

TransformModel = Callable[[nn.Module, TrainConfig], nn.Module]
_TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"context.device {name!r} is not a torch device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"context.device {name!r}: CUDA is not available here; use cpu or auto")
    return device


def _pick_attention(model: nn.Module, wanted: str, device: torch.device) -> None:
    from codellama_zoo.registry import get_registry

    registry = get_registry()
    if wanted == "auto":
        candidates = sorted(
            (a for a in registry.attention if a.backend == "torch" and a.is_available(str(device))),
            key=lambda a: -a.priority,
        )
        wanted = candidates[0].name if candidates else "eager"
    elif wanted != "eager":
        spec = registry.attention_for("torch", wanted)
        if not spec.is_available(str(device)):
            raise ConfigError(f"model_config.attention {wanted!r} is unavailable on {device}: "
                              f"{spec.unavailable_reason(str(device))}")
    model.set_attention(wanted)  # type: ignore[operator]


def build_model(cfg: TrainConfig, device: torch.device) -> nn.Module:
    """The model with seeded random weights, or with ``load_checkpoint``'s weights when finetuning."""
    from zoo_torch.model import Transformer

    mc = cfg.model_config
    config = mc.llama_config()
    dtype = _TORCH_DTYPES[mc.param_dtype]
    model = Transformer(config, device=device, dtype=dtype)
    model.init_weights(std=mc.init_std, generator=torch.Generator().manual_seed(cfg.seed))
    if cfg.run_mode == "finetune" or cfg.load_checkpoint:
        load_pretrained(model, cfg)
    _pick_attention(model, mc.attention, device)
    return model


def load_pretrained(model: nn.Module, cfg: TrainConfig) -> None:
    """Copy weights from ``load_checkpoint`` (any registered format, or a training checkpoint)."""
    path = Path(cfg.load_checkpoint)
    if not cfg.load_checkpoint:
        raise ConfigError("run_mode finetune needs load_checkpoint: the weights to start from")
    if (path / train_checkpoint.STATE_FILE).is_file():
        state = train_checkpoint.load(path)["model"]
    else:
        from zoo_torch.checkpoints import load_state_dict

        state, _ = load_state_dict(path, model.config)  # type: ignore[arg-type]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConfigError(
            f"load_checkpoint {str(path)!r} does not match model_config: missing {missing[:4]}, "
            f"unexpected {unexpected[:4]}"
        )


def default_transform(model: nn.Module, cfg: TrainConfig) -> nn.Module:
    """Plain data parallelism when several ranks run and no strategy was given."""
    _, world = rank_and_world()
    if world == 1:
        return model
    device = next(model.parameters()).device
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP/FSDP-style wrapper (or the model itself)."""
    inner: nn.Module = getattr(model, "module", model)
    return inner


def _llama_config(model: nn.Module) -> Any:
    return unwrap(model).config


def build_optimizer_and_schedule(
    model: nn.Module, cfg: TrainConfig, total_steps: int
) -> tuple[torch.optim.Optimizer, WarmupCosineSchedule]:
    optimizer = build_optimizer(model, cfg.optimizer, cfg.lr_schedule.learning_rate)
    return optimizer, build_schedule(optimizer, cfg.lr_schedule, total_steps)


@attrs.define
class StepContext:
    """Per-run settings :func:`train_step` needs."""

    device: torch.device
    autocast_dtype: torch.dtype | None
    max_grad_norm: float | None
    scaler: Any = None


def token_loss_sum(model: nn.Module, tokens: torch.Tensor, targets: torch.Tensor, ctx: StepContext) -> torch.Tensor:
    """Summed cross-entropy of every learned target (labels of -100 are skipped)."""
    tokens, targets = tokens.to(ctx.device), targets.to(ctx.device)
    autocast = (
        torch.autocast(ctx.device.type, dtype=ctx.autocast_dtype) if ctx.autocast_dtype is not None
        else contextlib.nullcontext()
    )
    with autocast:
        logits = model(tokens)  # (B, T, V) fp32
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, schedule: WarmupCosineSchedule,
               data: SampleArrays, micro_batches: list[np.ndarray], ctx: StepContext) -> dict[str, float]:
    """One optimizer step over accumulated micro batches; the loss is the mean over learned tokens."""
    batches = [data.batch(indices) for indices in micro_batches]
    count = sum(int((targets != IGNORE_INDEX).sum()) for _, targets in batches)
    norm = max(count, 1)
    total = 0.0
    optimizer.zero_grad(set_to_none=True)
    for i, (tokens, targets) in enumerate(batches):
        sync = i == len(batches) - 1
        no_sync = getattr(model, "no_sync", None)
        with contextlib.nullcontext() if sync or no_sync is None else no_sync():
            loss = token_loss_sum(model, tokens, targets, ctx) / norm
            if ctx.scaler is not None:
                ctx.scaler.scale(loss).backward()
            else:
                loss.backward()
        total += float(loss.detach())
    if ctx.scaler is not None:
        ctx.scaler.unscale_(optimizer)
    grad_norm = float("nan")
    if ctx.max_grad_norm is not None:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), ctx.max_grad_norm))
    if ctx.scaler is not None:
        ctx.scaler.step(optimizer)
        ctx.scaler.update()
    else:
        optimizer.step()
    lr = schedule.current
    schedule.step()
    _, world = rank_and_world()
    if world > 1:  # report the global batch's loss, not this rank's share
        both = torch.tensor([total * norm, float(count)], dtype=torch.float64, device=ctx.device)
        torch.distributed.all_reduce(both)
        total, count = float(both[0] / max(float(both[1]), 1.0)), int(both[1])
    tokens_in = sum(int(t.numel()) for t, _ in batches)
    return {"loss": total, "lr": lr, "grad_norm": grad_norm, "tokens": tokens_in, "targets": count}


@torch.no_grad()
def evaluate(model: nn.Module, data: SampleArrays, batch_size: int, ctx: StepContext, max_batches: int = -1) -> float:
    """Mean loss per learned token over the (first ``max_batches`` batches of the) dataset."""
    was_training = model.training
    model.eval()
    rank, world = rank_and_world()
    indices = np.arange(len(data))[rank::world]
    total, count = 0.0, 0
    for b, start in enumerate(range(0, len(indices), batch_size)):
        if 0 <= max_batches <= b:
            break
        tokens, targets = data.batch(indices[start : start + batch_size])
        total += float(token_loss_sum(model, tokens, targets, ctx))
        count += int((targets != IGNORE_INDEX).sum())
    if world > 1:
        reduced = torch.tensor([total, count], dtype=torch.float64, device=ctx.device)
        torch.distributed.all_reduce(reduced)
        total, count = float(reduced[0]), int(reduced[1])
    model.train(was_training)
    return total / max(count, 1)


def _progress(total: int, initial: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", disable=not enabled, file=sys.stderr,
                dynamic_ncols=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train(cfg: TrainConfig, *, stop_after: int | None = None, quiet: bool = False,
          transform_model: TransformModel | None = None) -> TrainResult:
    """Run ``cfg`` (train or finetune); resume from ``resume_training`` when set."""
    threads = torch.get_num_threads()
    if cfg.context.num_threads > 0:
        torch.set_num_threads(cfg.context.num_threads)
    try:
        return _train(cfg, stop_after, quiet, transform_model)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: TrainConfig, stop_after: int | None, quiet: bool,
           transform_model: TransformModel | None) -> TrainResult:
    if cfg.run_mode not in ("train", "finetune"):
        raise UsageError(f"run_mode {cfg.run_mode!r} cannot train; use train or finetune")
    if cfg.context.deterministic:
        torch.use_deterministic_algorithms(True)
    rank, world = rank_and_world()
    device = resolve_device(cfg.context.device)
    if device.type == "cuda" and world > 1 and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    output = Path(cfg.output_dir)
    seed_everything(cfg.seed)

    mc = cfg.model_config
    data = SampleArrays(cfg.train_dataset, mc.seq_length, "train_dataset")
    eval_data = None
    if cfg.eval_dataset is not None and cfg.eval_dataset.data_loader.dataset_dir:
        eval_data = SampleArrays(cfg.eval_dataset, mc.seq_length, "eval_dataset")
    runner = cfg.runner_config
    plan = BatchPlan(len(data), runner.batch_size, runner.gradient_accumulation_steps,
                     cfg.train_dataset.data_loader.shuffle, cfg.seed, cfg.train_dataset.drop_remainder)
    epochs = runner.epochs * cfg.train_dataset.repeat
    total_steps = runner.max_steps if runner.max_steps > 0 else epochs * plan.steps_per_epoch

    model = build_model(cfg, device)
    model.train()
    model = (transform_model or default_transform)(model, cfg)
    optimizer, schedule = build_optimizer_and_schedule(model, cfg, total_steps)
    autocast = mc.autocast_dtype if mc.autocast_dtype != mc.param_dtype else None
    scaler = torch.amp.GradScaler(device.type) if autocast == "fp16" and device.type == "cuda" else None
    wrapper = cfg.runner_wrapper
    ctx = StepContext(device, _TORCH_DTYPES[autocast] if autocast else None,
                      wrapper.max_grad_norm if wrapper.use_clip_grad else None, scaler)

    step = 0
    resume = train_checkpoint.resolve(cfg.resume_training, output)
    if resume is not None:
        payload = train_checkpoint.load(resume)
        unwrap(model).load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        schedule.load_state_dict(payload["schedule"])
        if scaler is not None and payload.get("scaler"):
            scaler.load_state_dict(payload["scaler"])
        train_checkpoint.set_rng_state(payload["rng"])
        step = int(payload["step"])

    ckpt_cb = cfg.checkpoint_callback
    save_every = ckpt_cb.save_checkpoint_steps if ckpt_cb else 0
    keep = ckpt_cb.keep_checkpoint_max if ckpt_cb else 3
    metrics_file = output / cfg.trainer.metrics_file
    main = rank == 0
    if main:
        output.mkdir(parents=True, exist_ok=True)
    log = open(metrics_file, "a", encoding="utf-8") if main else None  # noqa: SIM115 - closed below

    def emit(record: dict[str, Any]) -> None:
        if log is not None:
            log.write(json.dumps(record) + "\n")
            log.flush()

    def save_checkpoint(at: int) -> Path | None:
        saved = _save_checkpoint(at) if main else None
        if world > 1:
            torch.distributed.barrier()  # no rank runs ahead of (or resumes from) a half-written checkpoint
        return saved

    def _save_checkpoint(at: int) -> Path:
        epoch, in_epoch = plan.position(at)
        payload = {
            "model": unwrap(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": train_checkpoint.rng_state(),
            "step": at,
        }
        info = {"step": at, "epoch": epoch, "step_in_epoch": in_epoch, "total_steps": total_steps,
                "samples_seen": at * plan.global_batch, "config": _llama_config(model).to_params()}
        return train_checkpoint.save(output / "checkpoints", at, payload, info, keep)

    initial_eval = None
    if eval_data is not None and cfg.do_eval and step == 0:
        initial_eval = evaluate(model, eval_data, runner.batch_size, ctx, cfg.trainer.eval_batches)
        emit({"step": 0, "eval_loss": initial_eval})
    end = total_steps if stop_after is None else min(total_steps, stop_after)
    show = main and not quiet and cfg.trainer.progress and sys.stderr.isatty()
    bar = _progress(total_steps, step, show)
    first_loss = last_loss = None
    eval_loss = None
    tokens_done = 0
    checkpoint: Path | None = None
    window_tokens, window_start = 0, time.perf_counter()
    stop = _GracefulStop()
    try:
        while step < end and not stop.requested:
            epoch, in_epoch = plan.position(step)
            stats = train_step(model, optimizer, schedule, data, plan.micro_batches(epoch, in_epoch), ctx)
            step += 1
            if not math.isfinite(stats["loss"]):
                raise UsageError(f"loss became {stats['loss']} at step {step}; lower optimizer/lr_schedule.learning_rate")
            first_loss = stats["loss"] if first_loss is None else first_loss
            last_loss = stats["loss"]
            tokens_done += int(stats["tokens"]) * world
            window_tokens += int(stats["tokens"]) * world
            elapsed = time.perf_counter() - window_start
            tps = window_tokens / elapsed if elapsed > 0 else 0.0
            bar.update(1)
            bar.set_postfix(loss=f"{stats['loss']:.4f}", lr=f"{stats['lr']:.2e}", tok_s=f"{tps:,.0f}")
            if step % cfg.trainer.log_interval == 0 or step == end:
                emit({"step": step, "epoch": epoch, "loss": stats["loss"], "lr": stats["lr"],
                      "grad_norm": stats["grad_norm"], "tokens": tokens_done, "tokens_per_s": round(tps, 1)})
                window_tokens, window_start = 0, time.perf_counter()
            if eval_data is not None and cfg.do_eval and cfg.eval_step_interval > 0 and step % cfg.eval_step_interval == 0:
                eval_loss = evaluate(model, eval_data, runner.batch_size, ctx, cfg.trainer.eval_batches)
                emit({"step": step, "eval_loss": eval_loss})
            if save_every and step % save_every == 0:
                checkpoint = save_checkpoint(step) or checkpoint
        if eval_data is not None and cfg.do_eval and (eval_loss is None or cfg.eval_step_interval <= 0
                                                      or step % cfg.eval_step_interval):
            eval_loss = evaluate(model, eval_data, runner.batch_size, ctx, cfg.trainer.eval_batches)
            emit({"step": step, "eval_loss": eval_loss})
        if checkpoint is None or not checkpoint.name.endswith(f"{step:08d}"):
            checkpoint = save_checkpoint(step) or checkpoint
        weights = None
        if main and step >= total_steps:
            weights = _export(unwrap(model), output / "weights", cfg.train_dataset.data_loader.dataset_dir)
    finally:
        stop.restore()
        bar.close()
        if log is not None:
            log.close()
    return TrainResult(step, total_steps, tokens_done, first_loss, last_loss, initial_eval, eval_loss, output,
                       checkpoint, weights, metrics_file)


class _GracefulStop:
    """First Ctrl-C: finish the current step, checkpoint and return; a second one interrupts at once."""

    def __init__(self) -> None:
        import signal
        import threading

        self.requested = False
        self._previous: Any = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        import signal

        self.requested = True
        print("\nzoo: stopping after this step (checkpoint follows); press Ctrl-C again to abort", file=sys.stderr)
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)

    def restore(self) -> None:
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def _export(model: nn.Module, path: Path, dataset_dir: str) -> Path | None:
    """The trained weights as a ``zoo`` checkpoint that ``zoo run --weights`` loads.

    The tokenizer the training data was prepared with (named in its
    metadata) is copied beside the weights, so the folder is self-contained.
    """
    from codellama_zoo.registry import get_registry

    if "zoo" not in get_registry().checkpoint_formats:
        return None
    from zoo_datasets.storage import read_meta
    from zoo_torch.checkpoints import save_checkpoint

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    out = save_checkpoint(state, model.config, path, "zoo", overwrite=True)  # type: ignore[arg-type]
    tokenizer = (read_meta(dataset_dir).get("tokenizer") or {}).get("path")
    if tokenizer and Path(tokenizer).is_file():
        tmp = out / ".tokenizer.model.tmp"
        shutil.copyfile(tokenizer, tmp)
        os.replace(tmp, out / "tokenizer.model")
    return out
