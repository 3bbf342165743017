"""A fork server that runs untrusted programs, one per fresh child process.

Run as a standalone script (``python -I sandbox_server.py``): it imports
only the standard library, so nothing of the harness lives in the memory a
sample could inspect. The harness (``sandbox.py``) writes one JSON task per
line to its stdin and reads JSON events from its stdout.

Why a fork server and not ``subprocess`` per sample: a fork of an idle,
pre-warmed interpreter costs about a millisecond, a fresh interpreter tens of
milliseconds; and the harness is never the sample's parent, so a sample that
kills its parent kills only this server, which the harness notices and
replaces.

Each sample runs in a child that, before the program starts:

* becomes a session (and process-group) leader, so its whole group can be killed;
* gets ``/dev/null`` as stdin, one capped pipe as stdout+stderr, and no other
  inherited descriptors (the server's protocol pipes are closed);
* works in a fresh temporary directory with a scrubbed environment;
* gets ``resource`` limits: CPU seconds, address space, file size, open files,
  processes, no core dumps;
* when the server runs as root, drops to a user id of its own (unique per
  server), so ``RLIMIT_NPROC`` applies (root is exempt from it), the file
  system's permissions protect everything outside the work directory, and the
  server can kill every process of that uid afterwards (a fork bomb's
  children included, even those that started new sessions);
* asks for ``SIGKILL`` when its parent dies;
* disables the standard destructive functions (``os.system``, ``os.fork``,
  ``os.kill``, ``shutil.rmtree``, ``subprocess``, writing files outside its
  work directory, ...), raising ``PermissionError`` so the failure is legible.

The guard is a seat belt, not the wall: Python code can get around it (for
example through ``ctypes``). The wall is the separate process, its limits,
the separate uid and the kill of everything it started.
"""

from __future__ import annotations

import builtins
import ctypes
import errno
import io
import json
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

# Modules samples commonly use; loaded before forking so each child starts
# warm, and so a child whose uid cannot read the Python installation (e.g.
# an interpreter under a 0700 home directory) can still use them.
PRELOAD = (
    "abc array ast base64 binascii bisect calendar cmath collections collections.abc contextlib copy csv "
    "dataclasses datetime decimal difflib enum fractions functools glob hashlib heapq inspect itertools json "
    "locale math numbers operator pathlib pprint queue random re secrets shlex statistics string struct "
    "textwrap time types typing unicodedata uuid warnings zlib"
).split()

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
RESULT_FD = 3
MAX_RESULT_BYTES = 65536

_libc: Any = None


def _prctl(option: int, value: int) -> bool:
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        return bool(_libc.prctl(option, value, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


# -- the child: limits, identity, guard, then the program -------------------------


def _blocked(name: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(f"{name} is disabled in the sandbox")

    return refuse


_OS_BLOCKED = (
    "system popen fork forkpty vfork kill killpg execv execve execl execle execlp execlpe execvp execvpe "
    "spawnl spawnle spawnlp spawnlpe spawnv spawnve spawnvp spawnvpe posix_spawn posix_spawnp "
    "remove unlink rmdir removedirs rename renames replace truncate chmod fchmod lchmod chown fchown lchown "
    "chroot chdir fchdir setuid seteuid setgid setegid setreuid setregid setresuid setresgid setgroups "
    "setsid setpgid setpgrp link symlink mkfifo mknod plock nice setpriority "
    "register_at_fork"
).split()


def _install_guard(workdir: str) -> None:
    """Disable destructive functions and writes outside ``workdir``."""
    import faulthandler
    import posix

    faulthandler.disable()
    root = os.path.realpath(workdir)
    real_open, real_os_open, realpath, mkdir = builtins.open, os.open, os.path.realpath, os.mkdir

    def inside(path: Any) -> bool:
        if isinstance(path, int):
            return True
        resolved = realpath(os.fsdecode(path))
        return resolved == root or resolved.startswith(root + os.sep)

    def guarded_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if any(flag in mode for flag in "wax+") and not inside(file):
            raise PermissionError(f"writing {file!r} is not allowed: the sandbox may only write inside its work directory")
        return real_open(file, mode, *args, **kwargs)

    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def guarded_os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> Any:
        if flags & write_flags and not inside(path):
            raise PermissionError(f"writing {path!r} is not allowed: the sandbox may only write inside its work directory")
        return real_os_open(path, flags, *args, **kwargs)

    def guarded_mkdir(path: Any, *args: Any, **kwargs: Any) -> Any:
        if not inside(path):
            raise PermissionError(f"creating {path!r} is not allowed: the sandbox may only write inside its work directory")
        return mkdir(path, *args, **kwargs)

    builtins.open = io.open = guarded_open
    for module in (os, posix):
        for name in _OS_BLOCKED:
            if hasattr(module, name):
                setattr(module, name, _blocked(f"os.{name}"))
        setattr(module, "open", guarded_os_open)  # noqa: B010
        setattr(module, "mkdir", guarded_mkdir)  # noqa: B010
    for name in ("rmtree", "move", "chown"):
        setattr(shutil, name, _blocked(f"shutil.{name}"))
    for name in ("Popen", "call", "check_call", "check_output", "run", "getoutput", "getstatusoutput"):
        setattr(subprocess, name, _blocked(f"subprocess.{name}"))
    try:
        import _posixsubprocess

        _posixsubprocess.fork_exec = _blocked("_posixsubprocess.fork_exec")
    except ImportError:
        pass
    for name in ("exit", "quit", "help", "copyright", "credits", "license"):
        setattr(builtins, name, _blocked(name))
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None  # type: ignore[assignment]


def _set_limits(task: dict[str, Any], nproc: int) -> None:
    cpu = max(1, int(task["timeout"]) + 1)
    limits = {
        resource.RLIMIT_CPU: (cpu, cpu + 1),
        resource.RLIMIT_CORE: (0, 0),
        resource.RLIMIT_FSIZE: (task["file_size_mb"] << 20,) * 2,
        resource.RLIMIT_NOFILE: (256, 256),
        resource.RLIMIT_NPROC: (nproc, nproc),
    }
    if task["memory_mb"]:
        limits[resource.RLIMIT_AS] = (task["memory_mb"] << 20,) * 2
    for which, (soft, hard) in limits.items():
        current_hard = resource.getrlimit(which)[1]
        if current_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, current_hard), min(hard, current_hard)
        resource.setrlimit(which, (soft, hard))


def _scrubbed_environment(workdir: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _describe(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, MemoryError):
        return "memory limit", "MemoryError"
    if isinstance(exc, RecursionError):
        return "failed: RecursionError", str(exc)[:500]
    return f"failed: {type(exc).__name__}", str(exc)[:500]


def _child(task: dict[str, Any], workdir: str, uid: int | None, nproc: int, out_w: int, res_w: int) -> None:
    """Runs in the forked child; never returns."""
    write, _exit, dumps = os.write, os._exit, json.dumps

    def report(result: str, detail: str = "") -> None:
        try:
            write(RESULT_FD, dumps({"result": result, "detail": detail}).encode())
        except OSError:
            pass

    try:
        parent = os.getppid()
        os.setsid()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write fails instead of killing
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        os.dup2(res_w, RESULT_FD)
        os.closerange(RESULT_FD + 1, 65536)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True)
        os.chdir(workdir)
        os.environ.clear()
        os.environ.update(_scrubbed_environment(workdir))
        tempfile.tempdir = workdir
        _set_limits(task, nproc)
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # after setuid, which clears it
        if os.getppid() != parent:
            _exit(71)
        _install_guard(workdir)
    except BaseException as exc:  # the sandbox could not be set up: say so, never run the sample
        report("failed: sandbox setup", f"{type(exc).__name__}: {exc}")
        _exit(70)

    try:
        code = compile(task["program"], "<sample>", "exec")
        exec(code, {})
        result, detail = "passed", ""
    except BaseException as exc:
        result, detail = _describe(exc)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    report(result, detail)
    _exit(0)


# -- the server: fork, watch, kill, clean up -------------------------------------


class Server:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.imports = "all"  # or "preloaded": the sandbox uid cannot read the Python installation
        self.uid = self._pick_uid()
        self._user_processes, self._counted_at = 0, -1e9
        _prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphans of a sample come back to us to be killed and reaped
        # No parent-death signal here: it would follow the harness *thread*
        # that started us. When the harness dies, stdin ends and we stop.

    def _pick_uid(self) -> int | None:
        """A uid of our own when we are root and may switch to it; else None."""
        if os.geteuid() != 0 or os.environ.get("ZOO_SANDBOX_NO_UID"):
            return None
        uid = 1_000_000 + int.from_bytes(os.urandom(4), "little") % 2_000_000_000
        probe = os.fork()
        if probe == 0:
            try:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
                os._exit(0 if os.access(os.path.dirname(os.__file__), os.R_OK | os.X_OK) else 2)
            except BaseException:
                os._exit(1)
        _, status = os.waitpid(probe, 0)
        code = os.waitstatus_to_exitcode(status)
        if code == 2:
            self.imports = "preloaded"
        return uid if code in (0, 2) else None

    def _nproc_limit(self, task: dict[str, Any]) -> int:
        if self.uid is not None:
            return int(task["max_processes"])  # counts only our private uid's processes
        # Not root: the limit counts every process of this user, so allow the
        # ones that exist now plus a few (counted at most once a second).
        now = time.monotonic()
        if now - self._counted_at > 1.0:
            self._user_processes, self._counted_at = self._count_user_processes(), now
        return self._user_processes + int(task["max_processes"])

    @staticmethod
    def _count_user_processes() -> int:
        mine = 0
        me = os.getuid()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.stat(f"/proc/{entry}").st_uid == me:
                        mine += 1
                except OSError:
                    pass
        return mine

    def run(self, task: dict[str, Any], emit: Any) -> dict[str, Any]:
        workdir = tempfile.mkdtemp(prefix="zoo-sandbox-")
        if self.uid is not None:
            os.chown(workdir, self.uid, self.uid)
            os.chmod(workdir, 0o700)
        nproc = self._nproc_limit(task)
        out_r, out_w = os.pipe()
        res_r, res_w = os.pipe()
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(out_r)
                os.close(res_r)
                _child(task, workdir, self.uid, nproc, out_w, res_w)
            finally:
                os._exit(72)  # whatever happened, the child never returns into the server loop
        os.close(out_w)
        os.close(res_w)
        emit({"event": "start", "pid": pid})
        try:
            outcome = self._watch(pid, out_r, res_r, start + float(task["timeout"]), int(task["max_output"]))
        finally:
            self._kill_everything(pid)
            shutil.rmtree(workdir, ignore_errors=True)
        outcome["duration"] = round(time.monotonic() - start, 4)
        return outcome

    def _watch(self, pid: int, out_r: int, res_r: int, deadline: float, max_output: int) -> dict[str, Any]:
        selector = selectors.DefaultSelector()
        pidfd: int | None = None  # without one (kernels before 5.3), poll waitpid instead
        if not os.environ.get("ZOO_SANDBOX_NO_PIDFD"):
            try:
                pidfd = os.pidfd_open(pid)  # readable when the child exits
            except (AttributeError, OSError):
                pass
        watched = [fd for fd in (out_r, res_r, pidfd) if fd is not None]
        for fd in watched:
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ)
        output, result_bytes = bytearray(), bytearray()
        output_total = 0
        status: int | None = None
        timed_out = False
        open_pipes = {out_r, res_r}
        try:
            while open_pipes or status is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = status is None
                    break
                # Once the child is gone, grandchildren may still hold the
                # pipes open: drain briefly and stop.
                wait = remaining if status is None else min(remaining, 0.05)
                if pidfd is None and status is None:
                    wait = min(wait, 0.005)
                events = selector.select(wait)
                if pidfd is None and status is None:
                    reaped, code = os.waitpid(pid, os.WNOHANG)
                    if reaped:
                        status = code
                        continue
                if not events and status is not None:
                    break
                for key, _ in events:
                    fd = key.fd
                    if fd == pidfd:
                        selector.unregister(pidfd)
                        _, status = os.waitpid(pid, 0)
                        continue
                    try:
                        data = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    if not data:
                        selector.unregister(fd)
                        open_pipes.discard(fd)
                    elif fd == out_r:
                        output_total += len(data)
                        if len(output) < max_output:
                            output += data[: max_output - len(output)]
                    elif len(result_bytes) < MAX_RESULT_BYTES:
                        result_bytes += data
        finally:
            selector.close()
            for fd in watched:
                os.close(fd)
        if status is None:
            self._kill_group(pid)
            _, status = os.waitpid(pid, 0)
        outcome = self._classify(status, bytes(result_bytes), timed_out)
        text = output.decode("utf-8", "replace")
        if output_total > len(output):
            text += f"\n[... {output_total - len(output)} more bytes of output discarded]"
        outcome["output"] = text
        outcome["output_bytes"] = output_total
        return outcome

    @staticmethod
    def _classify(status: int, result_bytes: bytes, timed_out: bool) -> dict[str, Any]:
        if timed_out:
            return {"result": "timed out", "detail": "wall-clock limit reached"}
        try:
            reported = json.loads(result_bytes.decode()) if result_bytes else None
        except ValueError:
            reported = None
        code = os.waitstatus_to_exitcode(status)
        if isinstance(reported, dict) and isinstance(reported.get("result"), str):
            return {"result": reported["result"], "detail": str(reported.get("detail", ""))[:500]}
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            if -code == signal.SIGXCPU:
                return {"result": "timed out", "detail": "CPU time limit reached"}
            return {"result": f"failed: killed by {name}", "detail": ""}
        return {"result": "failed: exited before finishing", "detail": f"exit code {code}"}

    def _kill_group(self, pid: int) -> None:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _kill_everything(self, pid: int) -> None:
        """Kill the child's group, then everything else the sample started.

        The sample's child is reaped by now, and as subreaper we adopt every
        process it left behind: with no children left there is nothing to
        hunt, which is the common case and saves a fork per sample.
        """
        self._kill_group(pid)
        if not self._has_children():
            return
        if self.uid is not None:
            helper = os.fork()
            if helper == 0:
                try:
                    os.setuid(self.uid)
                    # kill(-1) as that uid reaches all its processes at once;
                    # a process with SIGKILL pending cannot fork, so a second
                    # round only catches forks that were mid-flight.
                    for _ in range(2):
                        os.kill(-1, signal.SIGKILL)
                except BaseException:
                    os._exit(1)
                os._exit(0)
            os.waitpid(helper, 0)
        else:
            self._kill_orphans()
        self._reap(wait_all=2.0)

    def _kill_orphans(self) -> None:
        """As subreaper we adopt a sample's orphans: kill every child we did not start."""
        for _ in range(100):
            found = False
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry}/stat", "rb") as handle:
                        stat = handle.read()
                except OSError:
                    continue
                fields = stat[stat.rfind(b")") + 2 :].split()
                if int(fields[1]) == self.pid and fields[0] != b"Z":
                    found = True
                    try:
                        os.kill(int(entry), signal.SIGKILL)
                    except OSError:
                        pass
            self._reap()
            if not found:
                return

    @staticmethod
    def _has_children() -> bool:
        """Reap exited children; True if any child is still running."""
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return True

    @staticmethod
    def _reap(wait_all: float = 0.0) -> None:
        """Collect exited children; with ``wait_all``, keep at it until none is left (or time runs out).

        Between samples the server has no children of its own, so anything
        left is a killed sample process (adopted as subreaper) on its way out.
        """
        deadline = time.monotonic() + wait_all
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                if time.monotonic() >= deadline:
                    return
                time.sleep(0.001)


def main() -> None:
    for name in (*PRELOAD, *sys.argv[1:]):  # extra modules to preload come as arguments
        try:
            __import__(name)
        except ImportError:
            pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the harness's to handle
    proto_in, proto_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    server = Server()

    def emit(event: dict[str, Any]) -> None:
        data = (json.dumps(event) + "\n").encode()
        while data:
            try:
                data = data[os.write(proto_out, data) :]
            except InterruptedError:
                continue

    emit({"event": "ready", "isolation": "uid" if server.uid is not None else "process-group", "uid": server.uid,
          "imports": server.imports})
    with os.fdopen(proto_in, "rb") as tasks:
        for line in tasks:
            try:
                task = json.loads(line)
                outcome = server.run(task, emit)
            except OSError as exc:
                if exc.errno == errno.EPIPE:
                    return
                outcome = {"result": "failed: sandbox error", "detail": f"{type(exc).__name__}: {exc}"}
            emit({"event": "done", **outcome})


if __name__ == "__main__":
    main()
