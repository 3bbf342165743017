"""Start a multi-process job through ``torch.distributed.run`` (torchrun).

One function, :func:`launch`, used by ``zoo train --nproc`` and ``zoo run
--nproc``: it builds torchrun's own arguments (static rendezvous for several
machines, a private one for a single machine), runs the workers with
``python -m zoo_parallel.worker``, writes every rank's output to
``LOG_DIR/<run>/attempt_0/<local rank>/{stdout,stderr}.log`` and, when a
worker fails, returns control at once (torchelastic stops the other ranks)
with a :class:`LaunchError` naming the rank and its error.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from codellama_zoo.errors import UsageError, ZooError

LOG_DIR_ENV = "ZOO_LOG_DIR"
Console = Literal["rank0-tee", "rank0-direct", "all"]


class LaunchError(ZooError):
    """A worker of a distributed job failed; the message names its rank and error."""

    def __init__(self, message: str, rank: int | None = None, exitcode: int | None = None) -> None:
        super().__init__(message)
        self.rank = rank
        self.exitcode = exitcode


@attrs.frozen(kw_only=True)
class LaunchOptions:
    """Where the workers run: ``nproc`` per node on ``nnodes`` machines."""

    nproc: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int | None = None  # None on one machine: pick a free port
    log_dir: str | None = None
    timeout_s: float = 300.0  # rendezvous and collective timeout
    console: Console = "rank0-tee"

    def check(self) -> None:
        if self.nproc < 1:
            raise UsageError(f"--nproc must be at least 1, got {self.nproc}")
        if self.nnodes < 1:
            raise UsageError(f"--nnodes must be at least 1, got {self.nnodes}")
        if not 0 <= self.node_rank < self.nnodes:
            raise UsageError(f"--node-rank must be in 0..{self.nnodes - 1} for --nnodes {self.nnodes}, got {self.node_rank}")
        if self.nnodes > 1 and self.master_port is None:
            raise UsageError("--master-port is required with --nnodes > 1 (the same on every machine)")
        if self.master_port is not None and not 0 < self.master_port < 65536:
            raise UsageError(f"--master-port must be in 1..65535, got {self.master_port}")
        if self.timeout_s <= 0:
            raise UsageError(f"the launch timeout must be positive, got {self.timeout_s}")

    @property
    def world_size(self) -> int:
        return self.nproc * self.nnodes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def default_log_dir() -> str:
    return os.environ.get(LOG_DIR_ENV) or str(Path("zoo-logs").absolute())


def _stream_specs(options: LaunchOptions) -> tuple[str, str, str]:
    """torchrun's --redirects, --tee and --local-ranks-filter values.

    Every rank writes its own log files; only global rank 0 reaches the
    console (``rank0-tee``: through torchrun's tee; ``rank0-direct``: rank 0
    keeps the terminal untouched, which streaming text output needs).
    """
    others = ",".join(f"{r}:3" for r in range(1, options.nproc))
    first_node = options.node_rank == 0
    if options.console == "all":
        return "3", "3", ""
    if options.console == "rank0-direct" and first_node:
        return (others or "0:0"), "0", "0"
    if first_node:
        return "3", "0:3", "0"
    return "3", "0", "0"


def torchrun_args(options: LaunchOptions, worker_args: Sequence[str], run_id: str) -> list[str]:
    """The argument list for ``torch.distributed.run`` that starts our worker module."""
    redirects, tee, ranks_filter = _stream_specs(options)
    port = options.master_port if options.master_port is not None else free_port()
    args = [
        f"--nnodes={options.nnodes}",
        f"--nproc-per-node={options.nproc}",
        f"--node-rank={options.node_rank}",
        f"--master-addr={options.master_addr}",
        f"--master-port={port}",
        "--rdzv-backend=static",
        f"--rdzv-id={run_id}",
        f"--rdzv-conf=timeout={int(options.timeout_s)},join_timeout={int(options.timeout_s)}",
        "--max-restarts=0",
        "--monitor-interval=0.1",
        "--start-method=spawn",
        f"--log-dir={options.log_dir or default_log_dir()}",
        f"--redirects={redirects}",
        f"--tee={tee}",
    ]
    if ranks_filter:
        args.append(f"--local-ranks-filter={ranks_filter}")
    return [*args, "--module", "zoo_parallel.worker", *worker_args]


def _quiet_torchelastic() -> None:
    """torchelastic logs every stop at WARNING; our own error message says it once."""
    for name in ("torch.distributed.elastic", "torch.distributed.run", "torch.distributed.launcher"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _error_text(failure: Any) -> str:
    message = failure.message
    if isinstance(message, dict):
        message = message.get("message", json.dumps(message))
    text = str(message or "").strip()
    if not text or text.startswith("To enable traceback"):
        return f"exit code {failure.exitcode}"
    return text


# What a healthy rank reports when a peer died under it: never the root cause if another rank failed.
_COLLATERAL = ("connection closed by peer", "connection reset by peer", "remote worker crashing",
               "distbackenderror", "broken pipe", "socket timeout", "sigterm", "signal 15")


def _collateral(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in _COLLATERAL)


def _log_tail(path: Path, lines: int = 8) -> str:
    try:
        content = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    useful = [line for line in content if line.strip()]
    return "\n".join(useful[-lines:])


def _describe_failure(exc: Any, log_root: Path | None, options: LaunchOptions) -> LaunchError:
    failures = dict(exc.failures)
    # The root cause is the rank that failed by itself, not the ones that failed because a peer
    # vanished or that the agent stopped afterwards (a rank may be stopped while it is still
    # shutting down after its own error, so a signal exit does not rule a rank out).
    def secondary(failure: Any) -> tuple[bool, bool]:
        text = _error_text(failure)
        return _collateral(text), text.startswith("exit code") or text.startswith("Signals.")

    rank, failure = min(failures.items(), key=lambda item: (*secondary(item[1]), item[1].timestamp, item[0]))
    error = _error_text(failure)
    where = ""
    if log_root is not None:
        rank_dir = log_root / "attempt_0" / str(failure.local_rank)
        where = f" (logs: {rank_dir})"
        if error.startswith("exit code"):
            tail = _log_tail(rank_dir / "stderr.log")
            if tail:
                error = f"{error}; last lines of its stderr:\n{tail}"
    others = sorted(r for r in failures if r != rank)
    stopped = f"; ranks {others} were stopped" if others else ""
    return LaunchError(
        f"worker rank {rank} of {options.world_size} failed: {error}{where}{stopped}",
        rank=rank,
        exitcode=failure.exitcode,
    )


def launch(worker_args: Sequence[str], options: LaunchOptions, env: dict[str, str] | None = None) -> Path | None:
    """Run ``python -m zoo_parallel.worker WORKER_ARGS`` on every rank; return the log folder.

    Raises :class:`LaunchError` as soon as one worker fails.
    """
    options.check()
    import torch.distributed.run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch

    from zoo_parallel.distributed import TIMEOUT_ENV

    _quiet_torchelastic()
    run_id = f"zoo-{uuid.uuid4().hex[:8]}"
    args = torchrun.parse_args(torchrun_args(options, worker_args, run_id))
    config, entrypoint, cmd_args = torchrun.config_from_args(args)
    # Workers inherit this process's environment: plugins allow-list, timeouts, threads.
    extra = {TIMEOUT_ENV: str(options.timeout_s), **(env or {})}
    saved = {key: os.environ.get(key) for key in extra}
    os.environ.update(extra)
    logs_specs = config.logs_specs
    try:
        elastic_launch(config=config, entrypoint=entrypoint)(*cmd_args)
    except ChildFailedError as exc:
        root = getattr(logs_specs, "_run_log_dir", None)
        raise _describe_failure(exc, Path(root) if root else None, options) from None
    finally:
        sys.stdout.flush()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    root = getattr(logs_specs, "_run_log_dir", None)
    return Path(root) if root else None
