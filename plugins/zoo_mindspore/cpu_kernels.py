"""Fused fp32 decode kernels for MindSpore on CPU, built once per machine and loaded as AOT custom ops.

MindSpore implements its fused RMSNorm / RoPE / SwiGLU / attention operators
only on Ascend; on CPU a decode step is ~170 small kernels, and its single-row
MatMul is 2-3x slower than torch's. ``csrc/decode_kernels.cc`` does the same
arithmetic in 5 kernels per layer (see :class:`DecodeKernels`). It is
compiled with the system C++ compiler (``$CXX``, else ``g++``/``c++``) for
this CPU, cached under ``$ZOO_KERNEL_CACHE`` (default
``~/.cache/codellama-zoo/kernels``; the temporary folder when that cannot be
created) keyed by the source, compiler, flags and CPU, and loaded with
``ops.Custom(func_type="aot")``.

Without a compiler (or with ``ZOO_MINDSPORE_CPU_KERNELS=0``) the backend uses
MindSpore's own operators; :func:`load_kernels` logs why, once.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ENABLE_ENV = "ZOO_MINDSPORE_CPU_KERNELS"
# Sequences decoded together up to which the kernels beat MindSpore's MatMul: they compute dot products (the
# weights stay (out, in) rows, shared with the operator path), which wins for a few rows; from ~32 rows a GEMM
# is faster (small config, 1 thread: 8 rows 4,086 vs 2,845 tok/s, 16 rows 3,835 vs 3,360, 32 rows 4,834 vs 5,590).
MAX_BATCH = 16
CACHE_ENV = "ZOO_KERNEL_CACHE"
DEFAULT_CACHE = "~/.cache/codellama-zoo/kernels"
SOURCE = Path(__file__).with_name("csrc") / "decode_kernels.cc"
BASE_FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC")
# tried in order: this CPU's vector units and OpenMP threads, then without what the compiler refuses
OPTIONAL_FLAGS = (("-march=native", "-fopenmp"), ("-march=native",), ("-fopenmp",), ())


class KernelBuildError(RuntimeError):
    """The C++ kernels could not be compiled or loaded; the message says why."""


def find_compiler() -> str | None:
    for candidate in (os.environ.get("CXX"), "g++", "c++"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def _cpu_signature() -> str:
    """What -march=native depends on: the CPU's model and feature flags."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return platform.machine() + platform.processor()
    lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags", "Features", "CPU part"))]
    return platform.machine() + "\n" + "\n".join(sorted(set(lines)))


def _compiler_version(compiler: str) -> str:
    try:
        return subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def build_library(source: Path = SOURCE, compiler: str | None = None) -> Path:
    """The compiled shared library for ``source``, building it (atomically) if the cache lacks it."""
    compiler = compiler or find_compiler()
    if compiler is None:
        raise KernelBuildError("no C++ compiler found (set $CXX or install g++)")
    code = source.read_bytes()
    key = hashlib.sha256(
        b"\0".join([code, _compiler_version(compiler).encode(), repr((BASE_FLAGS, OPTIONAL_FLAGS)).encode(),
                    _cpu_signature().encode()])
    ).hexdigest()[:16]
    # the cache folder, else (a read-only home) this machine's temporary folder
    for root in (cache_dir(), Path(tempfile.gettempdir()) / f"codellama-zoo-kernels-{os.getuid()}"):
        target = root / key / (source.stem + ".so")
        if target.exists():
            return target
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            break
        except OSError as exc:
            unwritable = exc
    else:
        raise KernelBuildError(f"no writable folder for the kernel cache (set ${CACHE_ENV}): {unwritable}")
    errors = ""
    for extra in OPTIONAL_FLAGS:
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".so.tmp", delete=False) as tmp:
            partial = Path(tmp.name)
        cmd = [compiler, *BASE_FLAGS, *extra, "-o", str(partial), str(source)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if done.returncode == 0:
            os.replace(partial, target)
            log.info("mindspore: compiled CPU decode kernels (%s) into %s", " ".join(extra) or "portable", target)
            return target
        partial.unlink(missing_ok=True)
        lines = done.stderr.strip().splitlines()
        errors = next((ln for ln in lines if "error" in ln), lines[-1] if lines else f"exit status {done.returncode}")
    raise KernelBuildError(f"compiling {source.name} with {compiler} failed: {errors}")


class DecodeKernels:
    """The custom ops, plus the library's thread setting.

    * ``norm_project(x, g, W, eps)``  -> W @ (RMSNorm(x) * g)
    * ``norm_swiglu(x, g, W13, eps)`` -> silu(w1 xn) * (w3 xn), W13 = w1|w3 rows
    * ``project_add(x, W, residual)`` -> residual + W @ x
    * ``attention(qkv, step, inv_freq, k_cache, v_cache, mask)`` -> (B, H*D), ``step`` (B,3) int32 =
      (token, position, slot): RoPE on q and k, k and v written into the cache Parameters in place at the
      slot, grouped-query attention
    """

    def __init__(self, library: Path) -> None:
        from mindspore import ops

        self.library = library
        lib = str(library)

        def aot(name: str, out_shape: Any, out_dtype: Any) -> Any:
            return ops.Custom(f"{lib}:{name}", out_shape=out_shape, out_dtype=out_dtype, func_type="aot")

        self.norm_project = aot("ZooNormProject", lambda x, g, w, e: x[:-1] + [w[0]], lambda x, g, w, e: x)
        self.norm_swiglu = aot("ZooNormSwiGLU", lambda x, g, w, e: x[:-1] + [w[0] // 2], lambda x, g, w, e: x)
        self.project_add = aot("ZooProjectAdd", lambda x, w, r: r, lambda x, w, r: r)
        self.attention = aot(
            "ZooDecodeAttention",
            lambda qkv, step, f, k, v, m: [k[0], qkv[-1] - 2 * k[1] * k[3]],
            lambda qkv, step, f, k, v, m: qkv,
        )

    def set_threads(self, threads: int) -> None:
        """Rows of large projections are split over ``threads`` (the library loaded by MindSpore is the same one)."""
        ctypes.CDLL(str(self.library)).zoo_set_threads(int(threads))


_cached: dict[str, Any] = {}


def load_kernels(threads: int = 1) -> DecodeKernels | None:
    """The decode kernels, or None (logged once) when they cannot be had here."""
    if os.environ.get(ENABLE_ENV, "1") == "0":
        return None
    if "library" not in _cached:
        try:
            _cached["library"] = build_library()
        except (KernelBuildError, OSError, subprocess.SubprocessError) as exc:
            _cached["library"] = None
            log.warning("mindspore: CPU decode kernels unavailable (%s); using MindSpore's own operators", exc)
    library = _cached["library"]
    if library is None:
        return None
    kernels = DecodeKernels(library)
    kernels.set_threads(threads)
    return kernels
