"""``zoo train --nproc N`` for layouts beyond plain data parallel (mp, pp, FSDP).

The torch trainer (``zoo_torch.trainer``) shards data by global rank and saves
from rank 0, which fits DDP; under tensor or pipeline parallel several ranks
share one data-parallel replica and the weights are sharded. This loop uses
the trainer's own pieces (model builder, optimizer and schedule, dataset
arrays, the deterministic batch order) and runs each step through
:meth:`ParallelModel.train_step`:

* data: replica ``dp_rank`` of ``dp`` takes its slice of every global batch
  (``batch_size`` per replica per micro step; under pipeline parallel the
  replica batch is split into ``micro_batch_num`` pipeline micro-batches);
* loss: normalised by the target tokens of the whole optimizer step over all
  replicas, so every layout computes the single-process gradient;
* checkpoints: sharded ``torch.distributed.checkpoint`` folders
  (``checkpoints/step_NNNNNNNN``: model, optimizer, schedule, data position),
  resumable under any layout; at the end the weights are merged into a
  ``zoo`` checkpoint (``weights/``) that ``zoo run --weights`` serves on one
  process.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from codellama_zoo.errors import UsageError

STEP_STATE = "train_state.json"


def replica_batches(order: Any, step_in_epoch: int, per_replica: int, accumulation: int,
                    dp: int, dp_rank: int) -> list[Any]:
    """This replica's sample indices for each micro step of one optimizer step."""
    import numpy as np

    global_batch = per_replica * accumulation * dp
    start = step_in_epoch * global_batch
    picked = np.take(order, np.arange(start, start + global_batch), mode="wrap")
    mine = picked.reshape(accumulation, dp, per_replica)[:, dp_rank]
    return [mine[i] for i in range(accumulation)]


def evaluate(parallel: Any, data: Any, per_replica: int, max_batches: int = -1) -> float:
    """Mean loss per target token of ``data`` (its first ``max_batches`` global batches), every rank."""
    import numpy as np

    dp, dp_rank = parallel.plan.dp, parallel.dp_rank
    usable = (len(data) // (per_replica * dp)) * per_replica * dp  # whole global batches: every rank steps together
    if usable == 0:
        raise UsageError(f"the eval dataset has {len(data)} samples, fewer than one global batch of {per_replica * dp}")
    was_training = parallel.module.training
    parallel.module.eval()
    total = count = 0.0
    for b, start in enumerate(range(0, usable, per_replica * dp)):
        if 0 <= max_batches <= b:
            break
        rows = np.arange(start + dp_rank * per_replica, start + (dp_rank + 1) * per_replica)
        loss_sum, targets = parallel.eval_sums(*data.batch(rows))
        total, count = total + loss_sum, count + targets
    parallel.module.train(was_training)
    return total / max(count, 1.0)


def _checkpoint_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("step_*") if (p / STEP_STATE).is_file())


def train_parallel(cfg: Any, *, stop_after: int | None = None, quiet: bool = False) -> Any:
    """Run training config ``cfg`` on the current process group as its ``parallel_config`` says."""
    import numpy as np
    import torch.distributed as dist

    from zoo_parallel.checkpoint import load_sharded, merge_checkpoint, save_sharded
    from zoo_parallel.distributed import device_for_rank
    from zoo_parallel.engine import parallelize
    from zoo_parallel.plan import plan_from_config
    from zoo_torch import trainer
    from zoo_torch.train_data import SampleArrays

    if cfg.run_mode not in ("train", "finetune"):
        raise UsageError(f"run_mode {cfg.run_mode!r} cannot train; use train or finetune")
    rank = dist.get_rank()
    main = rank == 0
    device = device_for_rank()
    trainer.seed_everything(cfg.seed)
    mc = cfg.model_config
    plan = plan_from_config(cfg.parallel_config)
    runner = cfg.runner_config
    per_replica = runner.batch_size * (plan.micro_batch_num if plan.pp > 1 else 1)
    accumulation = runner.gradient_accumulation_steps
    data = SampleArrays(cfg.train_dataset, mc.seq_length, "train_dataset")
    eval_data = None
    if cfg.do_eval and cfg.eval_dataset is not None and cfg.eval_dataset.data_loader.dataset_dir:
        eval_data = SampleArrays(cfg.eval_dataset, mc.seq_length, "eval_dataset")
    global_batch = per_replica * accumulation * plan.dp
    steps_per_epoch = len(data) // global_batch
    if steps_per_epoch == 0:
        raise UsageError(f"the dataset has {len(data)} samples, fewer than one global batch of {global_batch} "
                         f"(batch_size {runner.batch_size} x accumulation {accumulation} x data_parallel {plan.dp}"
                         + (f" x micro_batch_num {plan.micro_batch_num})" if plan.pp > 1 else ")"))
    epochs = runner.epochs * cfg.train_dataset.repeat
    total_steps = runner.max_steps if runner.max_steps > 0 else epochs * steps_per_epoch

    model = trainer.build_model(cfg, device)
    model.train()
    parallel = parallelize(model, plan, device=device, batch_size=per_replica * plan.dp, seq_length=mc.seq_length)
    optimizer, schedule = trainer.build_optimizer_and_schedule(parallel.module, cfg, total_steps)
    autocast = trainer._TORCH_DTYPES[mc.autocast_dtype] if mc.autocast_dtype != mc.param_dtype else None
    wrapper = cfg.runner_wrapper
    output = Path(cfg.output_dir)
    ckpt_root = output / "checkpoints"

    step = 0
    resume = cfg.resume_training
    if resume:
        where = ckpt_root if resume is True else Path(str(resume))
        found = where if (where / STEP_STATE).is_file() else next(reversed(_checkpoint_dirs(where)), None)
        if found is None:
            raise UsageError(f"resume_training={resume!r}: no sharded checkpoint ({STEP_STATE}) in {where}")
        load_sharded(parallel, found, optimizer)
        state = json.loads((found / STEP_STATE).read_text())
        schedule.load_state_dict(state["schedule"])
        step = int(state["step"])

    def save(at: int) -> Path:
        path = ckpt_root / f"step_{at:08d}"
        save_sharded(parallel, path, optimizer)
        if main:
            _copy_tokenizer(cfg.train_dataset.data_loader.dataset_dir, path)  # `zoo run --weights` reads it
            (path / STEP_STATE).write_text(json.dumps({
                "step": at, "schedule": schedule.state_dict(), "total_steps": total_steps,
                "samples_seen": at * global_batch, "layout": plan.describe(),
            }, indent=2))
        dist.barrier()
        return path

    if main:
        output.mkdir(parents=True, exist_ok=True)
    log = open(output / cfg.trainer.metrics_file, "a", encoding="utf-8") if main else None  # noqa: SIM115
    ckpt_cb = cfg.checkpoint_callback
    save_every = ckpt_cb.save_checkpoint_steps if ckpt_cb else 0
    end = total_steps if stop_after is None else min(total_steps, stop_after)
    from tqdm import tqdm

    bar = tqdm(total=total_steps, initial=step, desc=f"train {plan.describe()}", unit="step",
               disable=not (main and not quiet and cfg.trainer.progress and sys.stderr.isatty()), file=sys.stderr)
    def emit(record: dict[str, Any]) -> None:
        if log is not None:
            log.write(json.dumps(record) + "\n")
            log.flush()

    initial_eval = eval_loss = None
    if eval_data is not None and step == 0:
        initial_eval = evaluate(parallel, eval_data, per_replica, cfg.trainer.eval_batches)
        emit({"step": 0, "eval_loss": initial_eval})
    first_loss = last_loss = None
    tokens_done = 0
    checkpoint: Path | None = None
    window_start, window_tokens = time.perf_counter(), 0
    try:
        while step < end:
            epoch, in_epoch = divmod(step, steps_per_epoch)
            order = (np.random.default_rng([cfg.seed, epoch]).permutation(len(data))
                     if cfg.train_dataset.data_loader.shuffle else np.arange(len(data)))
            micro = [data.batch(idx) for idx in replica_batches(order, in_epoch, per_replica, accumulation,
                                                                 plan.dp, parallel.dp_rank)]
            total = parallel.count_targets([labels for _, labels in micro])
            optimizer.zero_grad(set_to_none=True)
            loss = 0.0
            for i, (tokens, labels) in enumerate(micro):
                loss += parallel.train_step(tokens, labels, total_targets=total, autocast_dtype=autocast,
                                            sync=i == len(micro) - 1)
            grad_norm = parallel.clip_grad_norm_(wrapper.max_grad_norm) if wrapper.use_clip_grad else float("nan")
            optimizer.step()
            lr = schedule.current
            schedule.step()
            step += 1
            if not math.isfinite(loss):
                raise UsageError(f"loss became {loss} at step {step}; lower optimizer/lr_schedule.learning_rate")
            first_loss = loss if first_loss is None else first_loss
            last_loss = loss
            step_tokens = sum(int(t.numel()) for t, _ in micro) * plan.dp
            tokens_done += step_tokens
            window_tokens += step_tokens
            elapsed = time.perf_counter() - window_start
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
            if step % cfg.trainer.log_interval == 0 or step == end:
                emit({"step": step, "epoch": epoch, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                      "tokens": tokens_done, "tokens_per_s": round(window_tokens / max(elapsed, 1e-9), 1),
                      "layout": plan.describe()})
                window_start, window_tokens = time.perf_counter(), 0
            if eval_data is not None and cfg.eval_step_interval > 0 and step % cfg.eval_step_interval == 0:
                eval_loss = evaluate(parallel, eval_data, per_replica, cfg.trainer.eval_batches)
                emit({"step": step, "eval_loss": eval_loss})
            if save_every and step % save_every == 0:
                checkpoint = save(step)
        if eval_data is not None and (eval_loss is None or cfg.eval_step_interval <= 0
                                      or step % cfg.eval_step_interval):
            eval_loss = evaluate(parallel, eval_data, per_replica, cfg.trainer.eval_batches)
            emit({"step": step, "eval_loss": eval_loss})
        if checkpoint is None or not checkpoint.name.endswith(f"{step:08d}"):
            checkpoint = save(step)
        weights = None
        if step >= total_steps:
            if main:
                weights = merge_checkpoint(checkpoint, output / "weights", to="zoo", overwrite=True)
                _copy_tokenizer(cfg.train_dataset.data_loader.dataset_dir, weights)
            dist.barrier()
    finally:
        bar.close()
        if log is not None:
            log.close()
    return trainer.TrainResult(step, total_steps, tokens_done, first_loss, last_loss, initial_eval, eval_loss, output,
                               checkpoint, weights, output / cfg.trainer.metrics_file)


def _copy_tokenizer(dataset_dir: str, weights: Path) -> None:
    """Put the tokenizer the data was prepared with beside the weights (as the zoo_torch trainer does)."""
    import os
    import shutil

    from zoo_datasets.storage import read_meta

    tokenizer = read_meta(dataset_dir).get("tokenizer")
    path = tokenizer.get("path") if isinstance(tokenizer, dict) else None
    if path and Path(path).is_file():
        tmp = weights / ".tokenizer.model.tmp"
        shutil.copyfile(path, tmp)
        os.replace(tmp, weights / "tokenizer.model")


def train_worker(config: str, overrides: list[str], run_mode: str | None = None, stop_after: int | None = None,
                 quiet: bool = False) -> None:
    """What each rank runs (``python -m zoo_parallel.worker call zoo_parallel.train_loop:train_worker``)."""
    import click
    import torch.distributed as dist

    from codellama_zoo.training import load_train_config

    cfg = load_train_config(config, overrides, run_mode)
    result = train_parallel(cfg, stop_after=stop_after, quiet=quiet)
    if dist.get_rank() == 0:
        click.echo(result.summary())
