"""``--nproc`` & co. for ``zoo train`` / ``zoo run``, and the ``zoo parallel`` commands."""

from __future__ import annotations

import functools
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from codellama_zoo.errors import UsageError

DISTRIBUTED_PARAMS = ("nproc", "nnodes", "node_rank", "master_addr", "master_port", "log_dir", "dist_timeout")
_WRAPPED = "_zoo_parallel_wrapped"


def _distributed_options(kind: str) -> list[click.Option]:
    what = "training" if kind == "train" else "tensor-parallel inference"
    return [
        click.Option(["--nproc"], type=int, default=1, show_default=True,
                     help=f"Processes per machine for {what} (torch.distributed.run; gloo on CPU, nccl on CUDA)."),
        click.Option(["--nnodes"], type=int, default=1, show_default=True, help="Machines taking part."),
        click.Option(["--node-rank"], type=int, default=0, show_default=True, help="This machine's index (0..nnodes-1)."),
        click.Option(["--master-addr"], default="127.0.0.1", show_default=True, help="Address of machine 0."),
        click.Option(["--master-port"], type=int, default=None, help="Port on machine 0 (required with --nnodes > 1)."),
        click.Option(["--log-dir"], type=click.Path(path_type=Path, file_okay=False), default=None,
                     help="Per-rank logs go under this folder (default: $ZOO_LOG_DIR or ./zoo-logs)."),
        click.Option(["--dist-timeout"], type=float, default=300.0, show_default=True,
                     help="Seconds a rank waits for the others (rendezvous, collectives) before the job fails."),
    ]


def add_distributed_options(command: click.Command, kind: str) -> None:
    """Give ``command`` the launcher options; with more than one process it relaunches itself per rank."""
    if getattr(command, _WRAPPED, False) or command.callback is None:
        return
    original = command.callback
    command.params.extend(_distributed_options(kind))

    @functools.wraps(original)
    def callback(**values: Any) -> Any:
        dist = {name: values.pop(name) for name in DISTRIBUTED_PARAMS}
        if dist["nproc"] == 1 and dist["nnodes"] == 1:
            return original(**values)
        from zoo_parallel.launcher import LaunchOptions

        options = LaunchOptions(
            nproc=dist["nproc"], nnodes=dist["nnodes"], node_rank=dist["node_rank"],
            master_addr=dist["master_addr"], master_port=dist["master_port"],
            log_dir=str(dist["log_dir"]) if dist["log_dir"] else None, timeout_s=dist["dist_timeout"],
            console="rank0-tee" if kind == "train" else "rank0-direct",
        )
        if kind == "train":
            return _launch_train(command, values, options)
        return _launch_run(command, values, options)

    command.callback = callback
    setattr(command, _WRAPPED, True)


def add_convert_options(command: click.Command) -> None:
    """``zoo convert --merge`` (sharded -> one checkpoint) and ``--split mp=N`` (one -> mp=N shards)."""
    if getattr(command, _WRAPPED, False) or command.callback is None:
        return
    original = command.callback
    for param in command.params:
        if param.name == "to":
            param.required = False  # --merge / --split choose it
    command.params.extend([
        click.Option(["--merge"], is_flag=True,
                     help="SRC is a sharded torch.distributed.checkpoint folder: merge it into one checkpoint "
                          "(--to defaults to zoo)."),
        click.Option(["--split"], metavar="mp=N", default=None,
                     help="Shard SRC for model_parallel=N: a torch.distributed.checkpoint folder (--to dcp)."),
    ])

    @functools.wraps(original)
    def callback(**values: Any) -> Any:
        merge, split = values.pop("merge"), values.pop("split")
        if merge and split:
            raise UsageError("--merge and --split go in opposite directions; pass one of them")
        if split is not None:
            key, _, number = split.partition("=")
            if key.strip() != "mp" or not number.strip().isdigit() or int(number) < 1:
                raise UsageError(f"--split {split!r}: expected mp=N with N a positive integer, e.g. --split mp=2")
            if values.get("to") not in (None, "dcp"):
                raise UsageError(f"--split writes the dcp format; drop --to {values['to']}")
            values["to"], values["shards"] = "dcp", int(number)
        if merge:
            from zoo_parallel.checkpoint import detect

            if not detect(Path(values["src"])):
                raise UsageError(f"--merge: {values['src']} is not a sharded checkpoint (no .metadata and "
                                 "zoo_parallel.json); it may already be a single checkpoint")
            values["to"] = values.get("to") or "zoo"
        if values.get("to") is None:
            raise UsageError("missing --to FORMAT (or --merge / --split mp=N)")
        return original(**values)

    command.callback = callback
    setattr(command, _WRAPPED, True)


def rebuild_args(command: click.Command, values: dict[str, Any]) -> list[str]:
    """The command line that gives ``command`` these parameter values (for the workers)."""
    options: list[str] = []
    positionals: list[str] = []
    for param in command.params:
        if param.name in DISTRIBUTED_PARAMS or param.name not in values:
            continue
        value = values[param.name]
        if isinstance(param, click.Argument):
            if value is not None:
                positionals.extend(str(v) for v in value) if param.nargs == -1 else positionals.append(str(value))
            continue
        assert isinstance(param, click.Option)
        if param.is_flag and param.secondary_opts:
            if value is not None:
                options.append(param.opts[0] if value else param.secondary_opts[0])
        elif param.is_flag:
            if value:
                options.append(param.opts[0])
        elif param.multiple:
            for item in value or ():
                options.extend([param.opts[0], str(item)])
        elif value is not None:
            options.extend([param.opts[0], str(value)])
    return [*options, "--", *positionals] if positionals else options


def _launch_train(command: click.Command, values: dict[str, Any], options: Any) -> None:
    from codellama_zoo.training import load_train_config
    from zoo_parallel.launcher import launch
    from zoo_parallel.plan import plan_from_config, validate_plan

    # Refuse a bad layout here, before any worker starts.
    cfg = load_train_config(values["config"], values.get("overrides") or (), values.get("run_mode"))
    if cfg.backend not in ("torch", "auto"):
        raise UsageError(
            f"--nproc starts torch.distributed workers, but this config trains with backend: {cfg.backend}; drop "
            "--nproc (MindSpore starts its own workers from parallel_config) or set backend: torch"
        )
    plan = plan_from_config(cfg.parallel_config)
    validate_plan(plan, cfg.model_config.llama_config(), options.world_size, seq_length=cfg.model_config.seq_length)
    if options.node_rank == 0:
        click.echo(f"zoo: training on {options.world_size} processes: {plan.describe()}", err=True)
    if plan.mp == 1 and plan.pp == 1 and plan.dp_mode == "ddp":
        # Plain data parallel: the backend's own trainer, which wraps the model in DDP.
        worker = ["cli", "train", *rebuild_args(command, values)]
    else:
        payload = {"config": str(Path(values["config"]).absolute()), "overrides": list(values.get("overrides") or ()),
                   "run_mode": values.get("run_mode"), "stop_after": values.get("stop_after"),
                   "quiet": bool(values.get("quiet"))}
        worker = ["call", "zoo_parallel.train_loop:train_worker", json.dumps(payload)]
    logs = launch(worker, options)
    if logs is not None and options.node_rank == 0:
        click.echo(f"zoo: per-rank logs in {logs}", err=True)


def _launch_run(command: click.Command, values: dict[str, Any], options: Any) -> None:
    from zoo_parallel.inference import TENSOR_PARALLEL_ENV
    from zoo_parallel.launcher import launch

    if values.get("backend") not in (None, "auto", "torch"):
        raise UsageError(f"--nproc shards a torch model over the ranks; drop --backend {values['backend']} "
                         "or use one process")
    if values.get("chat") and not values.get("prompt"):
        raise UsageError("an interactive chat cannot run with --nproc > 1; pass the message as the prompt argument")
    values = dict(values)
    slot = next((name for name in ("prompt", "model") if values.get(name) == "-"), None)
    if slot is not None:
        # Workers have no terminal: hand them stdin's text as a file.
        handle = tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="zoo-prompt-", delete=False)  # noqa: SIM115
        with handle:
            handle.write(sys.stdin.read())
        values[slot], values["prompt_file"] = None, Path(handle.name)
    launch(["cli", "run", *rebuild_args(command, values)], options, env={TENSOR_PARALLEL_ENV: "1"})


@click.group("parallel")
def parallel_group() -> None:
    """Distributed layouts and sharded checkpoints (torch.distributed)."""


@parallel_group.command("plan")
@click.argument("config", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--nproc", type=int, default=1, show_default=True, help="Processes per machine.")
@click.option("--nnodes", type=int, default=1, show_default=True, help="Machines.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key.")
def plan_command(config: Path, nproc: int, nnodes: int, overrides: tuple[str, ...]) -> None:
    """Check CONFIG's parallel_config against its model and the job size, without starting anything."""
    from codellama_zoo.training import load_train_config
    from zoo_parallel.plan import plan_from_config, validate_plan

    cfg = load_train_config(config, overrides)
    model = cfg.model_config.llama_config()
    plan = validate_plan(plan_from_config(cfg.parallel_config), model, nproc * nnodes,
                         seq_length=cfg.model_config.seq_length)
    click.echo(f"ok: {nproc * nnodes} ranks as {plan.describe()}; mesh (pp, dp, mp) = {plan.mesh_shape}")
    if plan.mp > 1:
        click.echo(f"    per rank: {model.n_heads // plan.mp} of {model.n_heads} heads, "
                   f"{model.kv_heads // plan.mp} of {model.kv_heads} kv heads")
    if plan.pp > 1:
        click.echo(f"    per stage: {model.n_layers // plan.pp} of {model.n_layers} layers")


@parallel_group.command("merge")
@click.argument("src", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--to", "to", default="zoo", show_default=True, help="Checkpoint format to write (registered name).")
@click.option("--dtype", type=click.Choice(["bf16", "fp16", "fp32"]), default=None, help="Cast floating tensors.")
def merge_command(src: Path, dst: Path, to: str, dtype: str | None) -> None:
    """Merge a sharded torch.distributed.checkpoint folder SRC into one checkpoint DST."""
    from zoo_parallel.checkpoint import merge_checkpoint

    path = merge_checkpoint(src, dst, to=to, dtype=dtype)
    click.echo(f"merged {src} into {path} ({to})")


@parallel_group.command("split")
@click.argument("src", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--mp", type=int, required=True, help="Tensor-parallel ranks to shard for.")
@click.option("--model", "model_name", default=None, help="Architecture of SRC when it has no config file.")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds before giving up.")
def split_command(src: Path, dst: Path, mp: int, model_name: str | None, timeout: float) -> None:
    """Shard the checkpoint in SRC for model_parallel=MP into a torch.distributed.checkpoint folder DST."""
    from zoo_parallel.checkpoint import split_checkpoint

    path = split_checkpoint(src, dst, mp=mp, model=model_name, timeout=timeout)
    click.echo(f"split {src} into {mp} tensor-parallel shards in {path}")
