"""Run a function on N local ranks (gloo/nccl) and collect what each returns.

For work that needs a process group but no command line — tests, splitting a
checkpoint into tensor-parallel shards. Every run has a hard deadline: a rank
that raises or hangs ends all of them, with the rank and error in the
message, so nothing waits forever.
"""

from __future__ import annotations

import os
import pickle
import queue as queue_module
import time
import traceback
from collections.abc import Callable
from typing import Any

from zoo_parallel.launcher import LaunchError, free_port


def _entry(fn: Callable[..., Any], rank: int, world: int, port: int, results: Any, args: tuple[Any, ...],
           env: dict[str, str]) -> None:
    os.environ.update(env)
    os.environ.update({
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank), "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world), "LOCAL_WORLD_SIZE": str(world),
    })
    from zoo_parallel.distributed import init_distributed, shutdown_distributed

    try:
        init_distributed()
        value = fn(*args)
        # Plain pickle: tensors travel as bytes, not as shared memory that dies with this process.
        results.put(("ok", rank, pickle.dumps(value)))
    except BaseException as exc:  # report everything, including KeyboardInterrupt in a child
        results.put(("error", rank, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    finally:
        shutdown_distributed()


def run_local(fn: Callable[..., Any], nprocs: int, *args: Any, timeout: float = 120.0,
              env: dict[str, str] | None = None) -> list[Any]:
    """``fn(*args)`` on ranks 0..nprocs-1 of a fresh process group; the return values by rank.

    ``fn`` must be importable (module level). Raises :class:`LaunchError`
    naming the first rank that failed, or the ranks still running at the
    deadline.
    """
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    child_env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), **(env or {})}
    procs = [
        ctx.Process(target=_entry, args=(fn, rank, nprocs, port, results, args, child_env), daemon=True)
        for rank in range(nprocs)
    ]
    for proc in procs:
        proc.start()
    values: dict[int, Any] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(values) < nprocs:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = sorted(set(range(nprocs)) - set(values))
                raise LaunchError(f"ranks {missing} did not finish within {timeout:.0f} s; stopped them", rank=missing[0])
            try:
                status, rank, value = results.get(timeout=min(remaining, 0.5))
            except queue_module.Empty:
                dead = [r for r, p in enumerate(procs) if p.exitcode not in (None, 0) and r not in values]
                if dead:
                    rank = dead[0]
                    raise LaunchError(f"rank {rank} died with exit code {procs[rank].exitcode}", rank=rank) from None
                continue
            if status == "error":
                first_line = value.splitlines()[0]
                raise LaunchError(f"rank {rank} of {nprocs} failed: {first_line}\n{value}", rank=rank)
            values[rank] = pickle.loads(value)
    finally:
        for proc in procs:
            proc.join(timeout=5 if len(values) == nprocs else 0.1)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        results.close()
    return [values[r] for r in range(nprocs)]
