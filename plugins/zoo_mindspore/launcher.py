"""Starting ``msrun`` for a multi-worker MindSpore run, safely.

msrun needs its own console script and ``python`` on ``PATH`` (so the
virtual environment's ``bin`` goes first), a free scheduler port, and a
timeout: when a worker dies the scheduler can wait forever. Worker logs go
to ``OUTPUT/msrun_logs``; on failure the error names the exit status and
shows the tail of the failing worker's log.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs

from codellama_zoo.errors import BackendUnavailableError, ZooError

DEFAULT_TIMEOUT_S = 1800.0
TIMEOUT_ENV = "ZOO_MSRUN_TIMEOUT"
WORKER_ROLE = "MS_WORKER"
WORKER_MARK = "ZOO_MSRUN_WORKER"  # set for msrun's workers, so a worker never launches msrun again


class MsrunError(ZooError):
    """msrun or one of its workers failed."""


def in_worker() -> bool:
    """True inside a process that msrun started."""
    return os.environ.get(WORKER_MARK) == "1" or os.environ.get("MS_ROLE") == WORKER_ROLE


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def msrun_executable() -> str:
    """msrun from this interpreter's environment, else from PATH."""
    local = Path(sys.executable).parent / "msrun"
    if local.is_file():
        return str(local)
    found = shutil.which("msrun")
    if found is None:
        raise BackendUnavailableError(
            "msrun (MindSpore's launcher) is not on PATH or beside this Python; reinstall MindSpore in this environment"
        )
    return found


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("GLOG_v", "3")
    env[WORKER_MARK] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _tail(log_dir: Path, lines: int = 15) -> str:
    logs = sorted(log_dir.glob("worker_*.log"))
    for log in logs:
        text = log.read_text(errors="replace")
        if "Traceback" in text or "Error" in text:
            kept = [line for line in text.splitlines() if not line.startswith("[INFO]") and not line.startswith("[WARNING]")]
            return f"{log.name}: " + " | ".join(kept[-lines:])
    return ""


def launch(cfg: Any, workers: int, *, stop_after: int | None, quiet: bool, timeout: float | None = None) -> dict[str, Any]:
    """Run ``cfg`` on ``workers`` msrun workers; returns rank 0's result record."""
    if in_worker():
        raise MsrunError("refusing to start msrun from inside an msrun worker (the worker saw a different world size)")
    output = Path(cfg.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    config_file = output / "msrun_config.json"
    config_file.write_text(json.dumps(attrs.asdict(cfg), indent=1))
    result_file = output / "train_result.json"
    result_file.unlink(missing_ok=True)
    log_dir = output / "msrun_logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    from zoo_mindspore import worker

    command = [
        msrun_executable(),
        f"--worker_num={workers}",
        f"--local_worker_num={workers}",
        f"--master_port={free_port()}",
        f"--log_dir={log_dir}",
        "--join=True",
        "--cluster_time_out=120",
        worker.__file__,
        str(config_file),
    ]
    if stop_after is not None:
        command += ["--stop-after", str(stop_after)]
    limit = float(os.environ.get(TIMEOUT_ENV, timeout or DEFAULT_TIMEOUT_S))
    if not quiet:
        print(f"zoo: starting {workers} MindSpore workers with msrun (logs in {log_dir})", file=sys.stderr)
    process = subprocess.Popen(
        command, env=worker_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        out, _ = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise MsrunError(
            f"msrun did not finish within {limit:.0f} s and was stopped (raise {TIMEOUT_ENV}); {_tail(log_dir)}"
        ) from None
    if process.returncode != 0 or not result_file.is_file():
        detail = _tail(log_dir) or out.decode(errors="replace").strip().splitlines()[-1:]
        raise MsrunError(f"msrun exited with status {process.returncode}; {detail} (all logs: {log_dir})")
    return dict(json.loads(result_file.read_text()))
