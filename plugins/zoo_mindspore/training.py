"""``zoo train`` with ``backend: mindspore``: the Llama Cell trained from MindRecord (or numpy) samples.

One optimizer step sees a *global batch* of ``batch_size x
gradient_accumulation_steps x data_parallel`` samples chosen by ``(seed,
epoch)`` only; each data-parallel rank takes its slice. The loss is the sum
of token losses over the global batch divided by its number of target
tokens, so a run on N msrun workers follows the same trajectory as one
process with the same global batch. The compiled step (``mindspore.jit``)
does forward, backward, the gradient all-reduce (data parallel), global-norm
clipping and AdamWeightDecay. Gradient accumulation is folded into the
micro batch (one larger batch per step, the same gradient).

Outputs (rank 0): ``OUTPUT/metrics.jsonl``, ``OUTPUT/checkpoints/step_N/``
(weights + optimizer state, resumable) and ``OUTPUT/weights/`` (a MindSpore
``.ckpt`` that ``zoo run --backend mindspore --weights`` loads). Every rank
writes ``OUTPUT/ranks/rank_R.json`` with its final loss and a digest of its
weights, so replicas can be checked for drift.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from codellama_zoo.errors import ConfigError, UsageError
from codellama_zoo.specs import LlamaConfig
from codellama_zoo.training import IGNORE_INDEX, TrainConfig, TrainResult

log = logging.getLogger(__name__)
RESULT_FILE = "train_result.json"
OPTIMIZER_FILE = "optimizer/optimizer.ckpt"  # beside model.ckpt, in its own folder (one .ckpt per folder)


# -- configuration ----------------------------------------------------------------------
def device_kind(cfg: TrainConfig) -> str:
    from zoo_mindspore.backend import device_kind as resolve

    target = cfg.context.device_target
    return resolve("auto" if target.lower() == "auto" else target.lower())


def model_config(cfg: TrainConfig) -> LlamaConfig:
    config = cfg.model_config.llama_config()
    if config.max_seq_len < cfg.model_config.seq_length:
        config = attrs.evolve(config, max_seq_len=cfg.model_config.seq_length)
    return config


def train_dtype(cfg: TrainConfig, kind: str) -> str:
    mc = cfg.model_config
    dtype = mc.param_dtype
    if dtype == "bf16" and kind != "ascend":
        raise ConfigError(
            f"model_config.param_init_type {mc.param_init_type} needs Ascend on MindSpore (bf16 compute); "
            f"on {kind} use float32"
        )
    if mc.autocast_dtype != dtype:
        log.warning(
            "mindspore: compute_dtype %s differs from param_init_type %s; training computes in %s",
            mc.compute_dtype, mc.param_init_type, mc.param_init_type,
        )
    return dtype


# -- data -------------------------------------------------------------------------------
class Samples:
    """``input_ids`` (and ``labels``) of a prepared dataset, MindRecord first."""

    def __init__(self, dataset_cfg: Any, seq_length: int, what: str) -> None:
        from zoo_datasets.storage import MINDRECORD_FILE, NumpySamples, open_samples

        loader = dataset_cfg.data_loader
        if not loader.dataset_dir:
            raise ConfigError(f"{what}.data_loader.dataset_dir is empty; set it to a `zoo data prepare` output")
        folder = Path(loader.dataset_dir)
        if loader.type == "NumpyDataset":
            fmt = "numpy"
        elif loader.type == "MindDataset" or (folder / MINDRECORD_FILE).is_file():
            fmt = "mindrecord"
        else:
            fmt = "auto"
        opened = open_samples(folder, fmt)
        self.format = "numpy" if isinstance(opened, NumpySamples) else "mindrecord"
        samples = opened if isinstance(opened, NumpySamples) else opened.random_access()  # memory-mapped either way
        columns = {c: samples.column(c) for c in samples.columns}
        missing = [c for c in dataset_cfg.input_columns if c not in columns]
        if missing:
            raise ConfigError(f"{what}.input_columns asks for {missing} but {folder} has columns {sorted(columns)}")
        self.input_ids = np.asarray(columns["input_ids"], np.int32)
        self.labels = np.asarray(columns["labels"], np.int32) if "labels" in dataset_cfg.input_columns else None
        if len(self.input_ids) == 0:
            raise ConfigError(f"{folder}: the dataset is empty")
        if self.input_ids.shape[1] - 1 > seq_length:
            raise ConfigError(
                f"{folder}: samples hold {self.input_ids.shape[1]} tokens but model_config.seq_length is {seq_length}; "
                f"prepare the data with --seq-length {seq_length}"
            )

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = self.input_ids[indices]
        labels = ids if self.labels is None else self.labels[indices]
        return np.ascontiguousarray(ids[:, :-1]), np.ascontiguousarray(labels[:, 1:])

    def target_count(self, indices: np.ndarray) -> int:
        return int((self.batch(indices)[1] != IGNORE_INDEX).sum())


@attrs.frozen
class BatchPlan:
    """Which samples each optimizer step and rank use; a function of (seed, epoch) only."""

    size: int
    per_rank: int  # batch_size x gradient_accumulation_steps
    world: int
    shuffle: bool
    seed: int

    @property
    def global_batch(self) -> int:
        return self.per_rank * self.world

    @property
    def steps_per_epoch(self) -> int:
        return self.size // self.global_batch

    def global_indices(self, step: int) -> np.ndarray:
        epoch, in_epoch = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(self.size) if self.shuffle else np.arange(self.size)
        return order[in_epoch * self.global_batch : (in_epoch + 1) * self.global_batch]

    def rank_indices(self, step: int, rank: int) -> np.ndarray:
        return self.global_indices(step)[rank * self.per_rank : (rank + 1) * self.per_rank]


def lr_schedule(cfg: TrainConfig, total_steps: int) -> np.ndarray:
    """Per-step learning rates: linear warmup, then cosine to lr_end (or constant)."""
    lr_cfg = cfg.lr_schedule
    total = lr_cfg.total_steps if lr_cfg.total_steps > 0 else total_steps
    warmup = lr_cfg.warmup_steps if lr_cfg.warmup_steps is not None else int(total * lr_cfg.warmup_ratio)
    rates = []
    for step in range(max(total_steps, 1)):
        if warmup and step < warmup:
            rates.append(lr_cfg.learning_rate * (step + 1) / warmup)
        elif lr_cfg.type == "ConstantWithWarmUpLR":
            rates.append(lr_cfg.learning_rate)
        else:
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            rates.append(lr_cfg.lr_end + (lr_cfg.learning_rate - lr_cfg.lr_end) * 0.5 * (1 + math.cos(math.pi * progress)))
    return np.asarray(rates, np.float32)


# -- model and step ---------------------------------------------------------------------
def build_model(cfg: TrainConfig, config: LlamaConfig, dtype: str, kind: str) -> Any:
    from zoo_mindspore import weights
    from zoo_mindspore.backend import resolve_attention
    from zoo_mindspore.model import Transformer

    model = Transformer(config, dtype=dtype)
    wanted = cfg.model_config.attention
    if cfg.model_config.use_flash_attention and wanted == "auto":
        wanted = "flash"
    from codellama_zoo.registry import get_registry

    if wanted != "auto" and f"mindspore/{wanted}" not in get_registry().attention:
        log.warning("mindspore: model_config.attention %r is a PyTorch kernel; using auto", wanted)
        wanted = "auto"
    _, kernel = resolve_attention(wanted, kind)
    if kernel is not None:
        model.set_attention(kernel)
    if cfg.load_checkpoint:
        from zoo_mindspore.backend import read_state

        weights.load_into(model, read_state(Path(cfg.load_checkpoint), config), source=cfg.load_checkpoint)
    else:
        weights.init_random(model, seed=cfg.seed, std=cfg.model_config.init_std)
    return model


def pipeline_loss(model: Any, micro_batches: int) -> Any:
    """The loss as a Cell split into micro batches for pipeline parallel (semi-auto, Ascend/GPU only).

    Follows MindSpore's documented functional pipeline recipe (``parallel.nn.Pipeline``
    around a loss Cell, ``PipelineGradReducer`` for the gradients); it cannot run on
    CPU, so no test here exercises it.
    """
    from mindspore import nn

    from zoo_mindspore.loss import token_loss_sum

    class CausalLMLoss(nn.Cell):
        def __init__(self, network: Any) -> None:
            super().__init__(auto_prefix=False)
            self.network = network

        def construct(self, tokens: Any, targets: Any, scale: Any) -> Any:
            return token_loss_sum(self.network(tokens), targets) * scale

    try:
        from mindspore.parallel.nn import Pipeline
    except ImportError:  # older MindSpore
        Pipeline = nn.PipelineCell  # noqa: N806
    return Pipeline(CausalLMLoss(model), micro_batches)


class StepBuilder:
    """The compiled training step and an uncompiled-loss evaluator over one model.

    Gradient reduction: data parallel averages with ``DistributedGradReducer``;
    pipeline parallel accumulates micro batches with ``PipelineGradReducer``;
    tensor parallel alone needs none (semi-auto parallel inserts the collectives).
    """

    def __init__(self, model: Any, optimizer: Any, world: int, max_grad_norm: float | None, data_parallel: bool,
                 pipeline_micro_batches: int = 0):
        import mindspore as ms
        from mindspore import nn, ops

        from zoo_mindspore.loss import token_loss_sum

        self.model, self.optimizer = model, optimizer

        if pipeline_micro_batches:
            from mindspore.parallel.nn import PipelineGradReducer

            ms.set_context(mode=ms.GRAPH_MODE)  # PipelineGradReducer requires graph mode
            forward: Any = pipeline_loss(model, pipeline_micro_batches)
            reducer: Any = PipelineGradReducer(optimizer.parameters)
        else:
            def forward(tokens: Any, targets: Any, scale: Any) -> Any:
                return token_loss_sum(model(tokens), targets) * scale

            reducer = nn.DistributedGradReducer(optimizer.parameters, mean=True, degree=world) if data_parallel else None
        grad_fn = ms.value_and_grad(forward, None, optimizer.parameters)

        @ms.jit
        def step(tokens: Any, targets: Any, scale: Any) -> tuple[Any, Any]:
            loss, grads = grad_fn(tokens, targets, scale)
            if reducer is not None:
                grads = reducer(grads)
            norm = ops.sqrt(ops.addn([ops.reduce_sum(ops.square(g.astype(ms.float32))) for g in grads]))
            if max_grad_norm is not None:
                grads = ops.clip_by_global_norm(grads, max_grad_norm)
            optimizer(grads)
            return loss, norm

        @ms.jit
        def loss_sum(tokens: Any, targets: Any) -> Any:
            return token_loss_sum(model(tokens), targets)

        self.step, self.loss_sum = step, loss_sum


def build_optimizer(model: Any, cfg: TrainConfig, rates: np.ndarray) -> Any:
    import mindspore as ms
    from mindspore import nn

    params = model.trainable_params()
    decay = [p for p in params if len(p.shape) >= 2 and "norm" not in p.name]
    chosen = {id(p) for p in decay}
    no_decay = [p for p in params if id(p) not in chosen]
    groups = [{"params": decay, "weight_decay": cfg.optimizer.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return nn.AdamWeightDecay(
        groups, learning_rate=ms.Tensor(rates), beta1=cfg.optimizer.beta1, beta2=cfg.optimizer.beta2, eps=cfg.optimizer.eps
    )


def weights_digest(model: Any) -> str:
    from zoo_mindspore.weights import state_dict

    digest = hashlib.sha256()
    for name, array in sorted(state_dict(model).items()):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


# -- checkpoints ------------------------------------------------------------------------
def latest_checkpoint(output: Path) -> Path | None:
    steps = sorted((output / "checkpoints").glob("step_*"))
    return steps[-1] if steps else None


def save_training_checkpoint(output: Path, step: int, model: Any, optimizer: Any, config: LlamaConfig, keep: int) -> Path:
    import mindspore as ms

    from zoo_mindspore import checkpoints, weights

    folder = output / "checkpoints" / f"step_{step:08d}"
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    checkpoints.save_ckpt(weights.state_dict(model), config, tmp)
    (tmp / "optimizer").mkdir()
    ms.save_checkpoint(optimizer, str(tmp / OPTIMIZER_FILE))
    (tmp / "state.json").write_text(json.dumps({"step": step}) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    for old in sorted((output / "checkpoints").glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def resume_from(cfg: TrainConfig, output: Path, model: Any, optimizer: Any) -> int:
    import mindspore as ms

    from zoo_mindspore import checkpoints, weights

    if cfg.resume_training is False or cfg.resume_training == "":
        return 0
    folder = latest_checkpoint(output) if cfg.resume_training is True else Path(str(cfg.resume_training))
    if folder is None:
        return 0
    if not (folder / OPTIMIZER_FILE).is_file():
        raise ConfigError(f"resume_training: {folder} is not a MindSpore training checkpoint (no {OPTIMIZER_FILE})")
    weights.load_into(model, checkpoints.read_ckpt_numpy(folder), source=str(folder))
    ms.load_param_into_net(optimizer, ms.load_checkpoint(str(folder / OPTIMIZER_FILE)))
    return int(json.loads((folder / "state.json").read_text())["step"])


# -- the run ----------------------------------------------------------------------------
def train(cfg: TrainConfig, *, stop_after: int | None = None, quiet: bool = False) -> TrainResult:
    """Train ``cfg`` on MindSpore; with data_parallel > 1 outside msrun, launch msrun and wait."""
    from zoo_mindspore import launcher, parallel
    from zoo_mindspore.backend import require_mindspore

    require_mindspore()
    if cfg.run_mode not in ("train", "finetune"):
        raise UsageError(f"run_mode {cfg.run_mode!r} cannot train; use train or finetune")
    kind = device_kind(cfg)
    config = model_config(cfg)
    worker = launcher.in_worker()
    plan = parallel.validate(cfg.parallel_config, config, kind, None, cfg.runner_config.batch_size)
    dtype = train_dtype(cfg, kind)
    if plan.distributed and not worker:  # the launcher; msrun's workers run _run directly
        record = launcher.launch(cfg, plan.world_size, stop_after=stop_after, quiet=quiet)
        return TrainResult(**record)
    return _run(cfg, config, plan, kind, dtype, stop_after, quiet)


def _run(cfg: TrainConfig, config: LlamaConfig, plan: Any, kind: str, dtype: str, stop_after: int | None,
         quiet: bool) -> TrainResult:
    import mindspore as ms
    from mindspore import ops

    from zoo_mindspore import checkpoints, parallel, weights
    from zoo_mindspore.backend import set_cpu_threads, set_device

    if plan.distributed and kind == "cpu":  # the workers share this machine's cores
        set_cpu_threads(max(1, len(os.sched_getaffinity(0)) // plan.world_size))
    set_device(kind)
    ms.set_seed(cfg.seed)
    rank, world = 0, 1
    if plan.distributed:
        from mindspore.communication import get_group_size, get_rank, init

        init()
        rank, world = get_rank(), get_group_size()
        parallel.validate(cfg.parallel_config, config, kind, world, cfg.runner_config.batch_size)
        ms.set_auto_parallel_context(**parallel.auto_parallel_context(plan, cfg.parallel))
    main = rank == 0
    output = Path(cfg.output_dir)
    if main:
        output.mkdir(parents=True, exist_ok=True)

    runner = cfg.runner_config
    data = Samples(cfg.train_dataset, cfg.model_config.seq_length, "train_dataset")
    dp = plan.data_parallel
    per_rank = runner.batch_size * runner.gradient_accumulation_steps
    batches = BatchPlan(len(data), per_rank, dp, cfg.train_dataset.data_loader.shuffle, cfg.seed)
    if batches.steps_per_epoch == 0:
        raise ConfigError(
            f"the dataset has {len(data)} samples, fewer than one global batch of {batches.global_batch} "
            f"(batch_size x gradient_accumulation_steps x data_parallel)"
        )
    epochs = runner.epochs * cfg.train_dataset.repeat
    total_steps = runner.max_steps if runner.max_steps > 0 else epochs * batches.steps_per_epoch
    eval_data = None
    if cfg.do_eval and cfg.eval_dataset is not None and cfg.eval_dataset.data_loader.dataset_dir:
        eval_data = Samples(cfg.eval_dataset, cfg.model_config.seq_length, "eval_dataset")

    model = build_model(cfg, config, dtype, kind)
    model = parallel.apply(model, plan)
    model.set_train(True)
    rates = lr_schedule(cfg, total_steps)
    optimizer = build_optimizer(model, cfg, rates)
    wrapper = cfg.runner_wrapper
    steps = StepBuilder(model, optimizer, world, wrapper.max_grad_norm if wrapper.use_clip_grad else None,
                        dp > 1 and not plan.semi_auto, plan.micro_batch_num if plan.pipeline_stage > 1 else 0)
    all_reduce = ops.AllReduce() if plan.distributed and not plan.semi_auto else None
    step = resume_from(cfg, output, model, optimizer)

    ckpt_cb = cfg.checkpoint_callback
    save_every = ckpt_cb.save_checkpoint_steps if ckpt_cb else 0
    keep = ckpt_cb.keep_checkpoint_max if ckpt_cb else 3
    metrics_file = output / cfg.trainer.metrics_file
    end = total_steps if stop_after is None else min(total_steps, stop_after)
    show = main and not quiet and cfg.trainer.progress and sys.stderr.isatty()
    from tqdm import tqdm

    bar = tqdm(total=total_steps, initial=step, unit="step", disable=not show, desc="train (mindspore)")
    first_loss = last_loss = eval_loss = None
    tokens_done = 0
    checkpoint: Path | None = None
    records: list[dict[str, Any]] = []
    window_tokens, window_start = 0, time.perf_counter()
    while step < end:
        global_indices = batches.global_indices(step)
        count = data.target_count(global_indices)
        # data parallel: each rank feeds its slice; semi-auto (full_batch): every rank feeds the global batch
        mine = global_indices if plan.semi_auto else batches.rank_indices(step, rank % dp)
        tokens, targets = data.batch(mine)
        scale = ms.Tensor(np.float32((1 if plan.semi_auto else world) / max(count, 1)))
        loss, norm = steps.step(ms.Tensor(tokens), ms.Tensor(targets), scale)
        if all_reduce is not None:
            loss = all_reduce(loss) / world
        loss_value, norm_value = float(loss.asnumpy()), float(norm.asnumpy())
        step += 1
        if not math.isfinite(loss_value):
            raise UsageError(f"loss became {loss_value} at step {step}; lower lr_schedule.learning_rate")
        first_loss = loss_value if first_loss is None else first_loss
        last_loss = loss_value
        tokens_done += count
        window_tokens += count
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.4f}")
        if step % cfg.trainer.log_interval == 0 or step == end:
            elapsed = time.perf_counter() - window_start
            records.append({"step": step, "loss": loss_value, "lr": float(rates[step - 1]),
                            "grad_norm": norm_value, "tokens": tokens_done,
                            "tokens_per_s": round(window_tokens / elapsed, 1) if elapsed > 0 else 0.0})
            window_tokens, window_start = 0, time.perf_counter()
        if main and save_every and step % save_every == 0:
            checkpoint = save_training_checkpoint(output, step, model, optimizer, config, keep)
    bar.close()
    if eval_data is not None:
        eval_total, eval_count = 0.0, 0
        limit = cfg.trainer.eval_batches
        for index, start in enumerate(range(0, len(eval_data) - runner.batch_size + 1, runner.batch_size)):
            if 0 <= limit <= index:
                break
            tokens, targets = eval_data.batch(np.arange(start, start + runner.batch_size))
            eval_total += float(steps.loss_sum(ms.Tensor(tokens), ms.Tensor(targets)).asnumpy())
            eval_count += int((targets != IGNORE_INDEX).sum())
        eval_loss = eval_total / max(eval_count, 1)
        records.append({"step": step, "eval_loss": eval_loss})
    digest = weights_digest(model)
    weights_dir = None
    if main:
        with open(metrics_file, "a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")
        if checkpoint is None or not checkpoint.name.endswith(f"{step:08d}"):
            checkpoint = save_training_checkpoint(output, step, model, optimizer, config, keep)
        if step >= total_steps:
            weights_dir = output / "weights"
            checkpoints.save_ckpt(weights.state_dict(model), config, weights_dir, dtype)
    result = TrainResult(
        steps=step, total_steps=total_steps, tokens=tokens_done, first_loss=first_loss, final_loss=last_loss,
        initial_eval_loss=None, eval_loss=eval_loss, backend="MindSpore", output_dir=str(output), checkpoint=str(checkpoint) if checkpoint else None,
        weights=str(weights_dir) if weights_dir else None, metrics_file=str(metrics_file), world_size=world,
        weights_digest=digest,
    )
    if plan.distributed:
        ranks = output / "ranks"
        ranks.mkdir(parents=True, exist_ok=True)
        (ranks / f"rank_{rank}.json").write_text(json.dumps({"rank": rank, "final_loss": last_loss, "digest": digest}))
        if main:
            (output / RESULT_FILE).write_text(json.dumps(result.to_json()))
    return result
