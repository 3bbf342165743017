"""Training run configuration (backend-neutral) and the ``zoo train`` command.

The sections and key names follow the seed's MindFormers YAML files
(``configs/codellama/*.yaml``): ``train_dataset``, ``eval_dataset``,
``optimizer``, ``lr_schedule``, ``parallel_config``, ``model_config``,
``runner_config``, ``runner_wrapper``, ``callbacks``, ``context``, ... so a
config reads the same whichever backend (``backend: torch`` or
``mindspore``) trains it. Every key is checked by
:func:`codellama_zoo.config.structure`; a typo is an error naming the file
and the key. Keys that only one runtime uses are accepted by both and
ignored where meaningless (e.g. ``sink_mode`` on PyTorch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import attrs
import click

from codellama_zoo.errors import ConfigError, UsageError

IGNORE_INDEX = -100
DTYPE_NAMES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "fp32": "fp32", "bf16": "bf16", "fp16": "fp16"}
DTypeName = Literal["float32", "bfloat16", "float16", "fp32", "bf16", "fp16"]


def _non_negative(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ConfigError(f"{attribute.name} must be >= 0, got {value!r}")


def _positive(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{attribute.name} must be > 0, got {value!r}")


@attrs.frozen(kw_only=True)
class DataLoaderConfig:
    """Where the prepared samples are (``zoo data prepare --output``)."""

    type: Literal["auto", "MindDataset", "NumpyDataset"] = "auto"  # MindDataset: MindRecord; NumpyDataset: samples.bin
    dataset_dir: str = ""
    shuffle: bool = True


@attrs.frozen(kw_only=True)
class DatasetConfig:
    """``train_dataset`` / ``eval_dataset``: a prepared dataset and how to batch it."""

    data_loader: DataLoaderConfig = attrs.field(factory=DataLoaderConfig)
    input_columns: tuple[str, ...] = ("input_ids",)  # add "labels" for prompt-masked finetuning data
    num_parallel_workers: int = 8
    python_multiprocessing: bool = False
    drop_remainder: bool = True
    repeat: int = attrs.field(default=1, validator=_positive)
    numa_enable: bool = False
    prefetch_size: int = 1

    def __attrs_post_init__(self) -> None:
        unknown = [c for c in self.input_columns if c not in ("input_ids", "labels")]
        if unknown or "input_ids" not in self.input_columns:
            raise ConfigError(
                f"input_columns {list(self.input_columns)!r}: must contain 'input_ids' and may add 'labels'"
            )


@attrs.frozen(kw_only=True)
class OptimizerConfig:
    """AdamW; ``FP32StateAdamWeightDecay`` keeps fp32 moments for low-precision weights."""

    type: Literal["FP32StateAdamWeightDecay", "AdamWeightDecay", "AdamW"] = "FP32StateAdamWeightDecay"
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = attrs.field(default=1e-8, validator=_positive)
    weight_decay: float = attrs.field(default=0.0, validator=_non_negative)  # not applied to norms and biases


@attrs.frozen(kw_only=True)
class LrScheduleConfig:
    """Linear warmup then cosine decay from ``learning_rate`` to ``lr_end``."""

    type: Literal["CosineWithWarmUpLR", "ConstantWithWarmUpLR"] = "CosineWithWarmUpLR"
    learning_rate: float = attrs.field(default=1e-5, validator=_positive)
    lr_end: float = attrs.field(default=0.0, validator=_non_negative)
    warmup_ratio: float = attrs.field(default=0.0, validator=_non_negative)
    warmup_steps: int | None = None  # overrides warmup_ratio when set
    total_steps: int = -1  # -1: the run's optimizer steps (dataset size x epochs / batch)

    def __attrs_post_init__(self) -> None:
        if self.warmup_ratio > 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1], got {self.warmup_ratio}")
        if self.total_steps == 0 or self.total_steps < -1:
            raise ConfigError(f"total_steps must be positive or -1 (the dataset's size), got {self.total_steps}")


@attrs.frozen(kw_only=True)
class ParallelConfig:
    """How the model is split over devices (the seed's ``parallel_config``)."""

    data_parallel: int = attrs.field(default=1, validator=_positive)
    model_parallel: int = attrs.field(default=1, validator=_positive)
    pipeline_stage: int = attrs.field(default=1, validator=_positive)
    micro_batch_num: int = attrs.field(default=1, validator=_positive)
    use_seq_parallel: bool = False
    vocab_emb_dp: bool = True
    gradient_aggregation_group: int = attrs.field(default=4, validator=_positive)
    optimizer_shard: bool = False  # shard weights/grads/optimizer over data parallel (torch: FSDP2 fully_shard)

    @property
    def world_size(self) -> int:
        return self.data_parallel * self.model_parallel * self.pipeline_stage


@attrs.frozen(kw_only=True)
class ModelConfig:
    """The architecture: a registered model name and/or explicit sizes (seed key names).

    ``preset`` names a model (``codellama-34b``, an alias, ...); any size key
    given overrides the preset's value. Without a preset every size key is
    required.
    """

    preset: str | None = None
    type: str = "LlamaConfig"
    batch_size: int = 1
    seq_length: int = attrs.field(default=4096, validator=_positive)
    hidden_size: int | None = None
    num_layers: int | None = None
    num_heads: int | None = None
    n_kv_heads: int | None = None
    vocab_size: int | None = None
    multiple_of: int | None = None
    ffn_dim_multiplier: float | None = None
    rms_norm_eps: float | None = None
    theta: float | None = None
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int = 0
    ignore_token_id: int = IGNORE_INDEX
    compute_dtype: DTypeName = "bfloat16"  # autocast dtype for matmuls
    param_init_type: DTypeName = "float32"  # dtype the weights are kept in
    layernorm_compute_type: DTypeName = "float32"
    softmax_compute_type: DTypeName = "float32"
    rotary_dtype: DTypeName = "float32"
    use_past: bool = False
    use_flash_attention: bool = False
    attention: str = "auto"  # torch: eager, sdpa, flash or auto
    init_std: float = attrs.field(default=0.02, validator=_positive)
    extend_method: str = "None"
    scaling_factor: float = 1.0
    fine_grain_interleave: int = 1
    offset: int = 0
    block_size: int = 16
    num_blocks: int = 512
    is_dynamic: bool = False
    checkpoint_name_or_path: str = ""
    repetition_penalty: float = 1.0
    max_decode_length: int = 512
    top_k: int = 0
    top_p: float = 1.0
    do_sample: bool = False

    def llama_config(self) -> Any:
        """The :class:`~codellama_zoo.specs.LlamaConfig` this section describes."""
        from codellama_zoo.specs import LlamaConfig

        overrides: dict[str, Any] = {
            "dim": self.hidden_size,
            "n_layers": self.num_layers,
            "n_heads": self.num_heads,
            "n_kv_heads": self.n_kv_heads,
            "vocab_size": self.vocab_size,
            "multiple_of": self.multiple_of,
            "ffn_dim_multiplier": self.ffn_dim_multiplier,
            "norm_eps": self.rms_norm_eps,
            "rope_theta": self.theta,
        }
        given = {k: v for k, v in overrides.items() if v is not None}
        if self.preset:
            from codellama_zoo.registry import get_registry

            base = get_registry().model(self.preset).config
            return attrs.evolve(base, **given, max_seq_len=max(base.max_seq_len, self.seq_length))
        missing = [seed for seed, ours in _SEED_KEYS.items() if overrides[ours] is None and ours in _REQUIRED]
        if missing:
            raise ConfigError(
                f"model_config: no preset and no {', '.join(missing)}; set model_config.preset "
                "(e.g. codellama-34b) or give every size"
            )
        return LlamaConfig(**given, max_seq_len=self.seq_length)

    @property
    def param_dtype(self) -> str:
        return DTYPE_NAMES[self.param_init_type]

    @property
    def autocast_dtype(self) -> str:
        return DTYPE_NAMES[self.compute_dtype]


_SEED_KEYS = {"hidden_size": "dim", "num_layers": "n_layers", "num_heads": "n_heads", "vocab_size": "vocab_size"}
_REQUIRED = {"dim", "n_layers", "n_heads", "vocab_size"}


@attrs.frozen(kw_only=True)
class RunnerConfig:
    """Epochs, batch size and accumulation (``runner_config``)."""

    epochs: int = attrs.field(default=1, validator=_positive)
    batch_size: int = attrs.field(default=1, validator=_positive)  # per data-parallel rank, per micro step
    gradient_accumulation_steps: int = attrs.field(default=1, validator=_positive)
    max_steps: int = -1  # optimizer steps; -1: epochs x steps per epoch
    sink_mode: bool = True
    sink_size: int = 1


@attrs.frozen(kw_only=True)
class ScaleSenseConfig:
    type: str = "DynamicLossScaleUpdateCell"
    loss_scale_value: float = 65536
    scale_factor: float = 2
    scale_window: int = 1000


@attrs.frozen(kw_only=True)
class RunnerWrapperConfig:
    """One optimizer step: gradient clipping (and loss scaling on MindSpore)."""

    type: str = "MFTrainOneStepCell"
    scale_sense: ScaleSenseConfig | float = attrs.field(factory=ScaleSenseConfig)
    use_clip_grad: bool = True
    max_grad_norm: float = attrs.field(default=1.0, validator=_positive)


@attrs.frozen(kw_only=True)
class CallbackConfig:
    """An entry of ``callbacks``; ``CheckpointMonitor`` sets checkpoint cadence."""

    type: Literal["MFLossMonitor", "CheckpointMonitor", "ObsMonitor", "SummaryMonitor"]
    prefix: str = "checkpoint"
    save_checkpoint_steps: int = attrs.field(default=1000, validator=_positive)
    keep_checkpoint_max: int = attrs.field(default=3, validator=_positive)
    integrated_save: bool = False
    async_save: bool = False


@attrs.frozen(kw_only=True)
class TrainerConfig:
    """What trains and how it reports (``trainer``)."""

    type: str = "CausalLanguageModelingTrainer"
    model_name: str = ""
    log_interval: int = attrs.field(default=10, validator=_positive)  # steps between metrics lines
    eval_batches: int = -1  # at most this many eval batches per evaluation (-1: all)
    metrics_file: str = "metrics.jsonl"  # under output_dir
    progress: bool = True  # a progress bar when stderr is a terminal


@attrs.frozen(kw_only=True)
class ContextConfig:
    """Device and runtime settings (``context``); ``device`` is for PyTorch."""

    mode: int = 0
    device_target: str = "auto"  # Ascend / GPU / CPU on MindSpore; "auto" picks
    device: str = "auto"  # torch: auto, cpu, cuda, cuda:N
    device_id: int = 0
    max_call_depth: int = 10000
    max_device_memory: str = ""
    save_graphs: bool = False
    save_graphs_path: str = "./graph"
    enable_graph_kernel: bool = False
    memory_optimize_level: str = "O0"
    jit_config: dict[str, Any] = attrs.field(factory=dict)
    ascend_config: dict[str, Any] = attrs.field(factory=dict)
    deterministic: bool = False  # torch.use_deterministic_algorithms
    num_threads: int = 0  # CPU threads for torch; 0 = the library default (1 is fastest on a busy machine)


@attrs.frozen(kw_only=True)
class RecomputeConfig:
    recompute: bool = False
    select_recompute: bool = False
    parallel_optimizer_comm_recompute: bool = False
    mp_comm_recompute: bool = True
    recompute_slice_activation: bool = True


@attrs.frozen(kw_only=True)
class TrainConfig:
    """A whole training run, as one YAML file describes it."""

    seed: int = 0
    output_dir: str = "./output"
    load_checkpoint: str = ""  # weights to start from (finetune); any registered checkpoint format
    auto_trans_ckpt: bool = False
    only_save_strategy: bool = False
    resume_training: bool | str = False  # true: latest checkpoint under output_dir; or a checkpoint path
    run_mode: Literal["train", "finetune", "predict", "eval"] = "train"
    backend: str = "torch"  # a registered backend (torch, mindspore) or auto
    use_parallel: bool = False
    do_eval: bool = False
    eval_step_interval: int = -1  # steps between evaluations; -1: none during training
    eval_epoch_interval: int = 1
    micro_batch_interleave_num: int = 1
    trainer: TrainerConfig = attrs.field(factory=TrainerConfig)
    runner_config: RunnerConfig = attrs.field(factory=RunnerConfig)
    runner_wrapper: RunnerWrapperConfig = attrs.field(factory=RunnerWrapperConfig)
    optimizer: OptimizerConfig = attrs.field(factory=OptimizerConfig)
    lr_schedule: LrScheduleConfig = attrs.field(factory=LrScheduleConfig)
    train_dataset: DatasetConfig = attrs.field(factory=DatasetConfig)
    eval_dataset: DatasetConfig | None = None
    parallel_config: ParallelConfig = attrs.field(factory=ParallelConfig)
    recompute_config: RecomputeConfig = attrs.field(factory=RecomputeConfig)
    callbacks: tuple[CallbackConfig, ...] = ()
    context: ContextConfig = attrs.field(factory=ContextConfig)
    model_config: ModelConfig = attrs.field(factory=ModelConfig)
    parallel: dict[str, Any] = attrs.field(factory=dict)  # MindSpore auto-parallel context, passed through
    processor: dict[str, Any] = attrs.field(factory=dict)  # tokenizer settings, passed through

    @property
    def checkpoint_callback(self) -> CallbackConfig | None:
        return next((c for c in self.callbacks if c.type == "CheckpointMonitor"), None)


def load_train_config(
    path: str | Path, overrides: list[str] | tuple[str, ...] = (), run_mode: str | None = None
) -> TrainConfig:
    """Read and validate a training YAML, applying ``--set`` overrides and ``--run-mode``."""
    from codellama_zoo.config import load_config

    extra = list(overrides)
    if run_mode is not None:
        extra.append(f"run_mode={run_mode}")
    return load_config(path, TrainConfig, extra)


def run_training(cfg: TrainConfig, *, stop_after: int | None = None, quiet: bool = False) -> Any:
    """Dispatch ``cfg`` to its backend's ``train`` entry."""
    from codellama_zoo.registry import get_registry

    if cfg.run_mode not in ("train", "finetune"):
        raise UsageError(
            f"run_mode {cfg.run_mode!r} is not a training mode; `zoo train` runs train or finetune "
            "(use `zoo run` to generate)"
        )
    if cfg.run_mode == "finetune" and not cfg.load_checkpoint:
        raise ConfigError("run_mode finetune needs load_checkpoint: the weights to start from (set it with --set)")
    registry = get_registry()
    name = cfg.backend
    if name == "auto":
        available = sorted(
            (b for b in registry.backends if b.train is not None and b.is_available()), key=lambda b: -b.priority
        )
        if not available:
            raise UsageError("no installed backend can train; install PyTorch (codellama-zoo[torch])")
        name = available[0].name
    backend = registry.backends.get(name)
    if backend.train is None:
        raise UsageError(f"backend {name!r} cannot train (it registers no train entry); try backend: torch")
    if not backend.is_available():
        from codellama_zoo.errors import BackendUnavailableError

        raise BackendUnavailableError(f"backend {name!r} is not available: {backend.unavailable_reason()}")
    return backend.train(cfg, stop_after=stop_after, quiet=quiet)


def _optional_path(value: Any) -> Path | None:
    return None if value is None else Path(value)


@attrs.frozen
class TrainResult:
    """What a training run did, whatever the backend; ``zoo train`` prints :meth:`summary`."""

    steps: int
    total_steps: int
    tokens: int
    first_loss: float | None
    final_loss: float | None
    initial_eval_loss: float | None
    eval_loss: float | None
    output_dir: Path = attrs.field(converter=Path)
    checkpoint: Path | None = attrs.field(converter=_optional_path)
    weights: Path | None = attrs.field(converter=_optional_path)
    metrics_file: Path = attrs.field(converter=Path)
    backend: str = "torch"
    world_size: int = 1
    weights_digest: str = ""

    def summary(self) -> str:
        head = f"trained {self.steps}/{self.total_steps} steps ({self.tokens:,} tokens)"
        if self.backend != "torch":
            head += f" on {self.backend}"
        if self.world_size > 1:
            head += f" x {self.world_size} workers"
        parts = [head]
        if self.first_loss is not None and self.final_loss is not None:
            parts.append(f"loss {self.first_loss:.4f} -> {self.final_loss:.4f}")
        if self.eval_loss is not None:
            start = f"{self.initial_eval_loss:.4f} -> " if self.initial_eval_loss is not None else ""
            parts.append(f"eval loss {start}{self.eval_loss:.4f}")
        if self.checkpoint is not None:
            parts.append(f"checkpoint {self.checkpoint}")
        if self.weights is not None:
            parts.append(f"weights {self.weights}")
        parts.append(f"metrics {self.metrics_file}")
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-ready fields (paths as strings), e.g. for a launcher to hand back."""
        return attrs.asdict(self, value_serializer=lambda _inst, _field, v: str(v) if isinstance(v, Path) else v)


@click.command("train")
@click.argument("config", type=click.Path(path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set optimizer.learning_rate=1e-4 (repeatable).")
@click.option("--run-mode", type=click.Choice(["train", "finetune"]), default=None,
              help="train from scratch, or finetune from load_checkpoint (overrides run_mode).")
@click.option("--stop-after", type=int, default=None, metavar="STEPS",
              help="Stop (with a checkpoint) at this optimizer step, counted from the run's start; "
                   "continue later with --set resume_training=true.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_command(
    config: Path, overrides: tuple[str, ...], run_mode: str | None, stop_after: int | None, quiet: bool
) -> None:
    """Train or finetune a model from a YAML config."""
    cfg = load_train_config(config, overrides, run_mode)
    result = run_training(cfg, stop_after=stop_after, quiet=quiet)
    summary = getattr(result, "summary", None)
    if callable(summary):
        click.echo(summary())
