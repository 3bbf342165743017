"""nox sessions: tests, lint, typecheck (and bench, added by the runtimes).

Each session installs torch 2.13.0 (the CPU wheel) explicitly before the
project, so that no extra can pull a CUDA build of torch.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
TORCH = "torch==2.13.0"
ROOTS = ["core", "plugins", "zoo"]


def _install(session: nox.Session, extras: str) -> None:
    session.install(TORCH)
    session.install("-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite, on two workers."""
    _install(session, "all,test")
    session.run("pytest", "-n", "2", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over every source root, the tests and the example plugin."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", *ROOTS, "tests", "examples")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy over the three source roots (mypy_path = core:plugins:zoo)."""
    _install(session, "all,dev")
    session.run("mypy", *ROOTS)


@nox.session
def bench(session: nox.Session) -> None:
    """`zoo bench`: our torch model vs transformers (small and 7B-shaped 2-layer configs); args pass through."""
    _install(session, "torch,test")
    session.run("zoo", "bench", *session.posargs)
