"""The program every rank runs under ``torch.distributed.run``.

``python -m zoo_parallel.worker cli ARGS...`` joins the process group, loads
the plugins (so third-party strategies and models exist in every worker) and
runs the ``zoo`` command line in-process; ``call MODULE:FUNCTION JSON`` runs
one function with keyword arguments (checkpoint splitting, tests). Errors are
recorded by torchelastic's ``@record`` so the launcher can name the failing
rank and its exception.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

from torch.distributed.elastic.multiprocessing.errors import record

from zoo_parallel.distributed import init_distributed, rank, shutdown_distributed, world_size


class WorkerError(RuntimeError):
    """A zoo command failed inside a worker; the message is the CLI's one line."""


def _load_plugins() -> None:
    from codellama_zoo.plugins import get_plugin_manager
    from zoo_parallel.inference import install

    get_plugin_manager()  # prints skipped plugins on stderr, per rank
    install()  # zoo run --nproc: the torch backend loads tensor-parallel models


def _run_cli(argv: list[str]) -> None:
    import click

    from codellama_zoo.cli import cli
    from codellama_zoo.errors import ZooError

    try:
        cli.main(args=argv, prog_name="zoo", standalone_mode=False)
    except click.ClickException as exc:
        raise WorkerError(exc.format_message()) from None
    except ZooError as exc:
        raise WorkerError(str(exc)) from None


def call_function(target: str, kwargs: dict[str, Any]) -> Any:
    module_name, _, function_name = target.partition(":")
    if not function_name:
        raise WorkerError(f"call target {target!r} must look like 'package.module:function'")
    function = getattr(importlib.import_module(module_name), function_name)
    return function(**kwargs)


@record
def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ("cli", "call"):
        raise WorkerError("usage: python -m zoo_parallel.worker {cli ARGS... | call MODULE:FUNCTION JSON}")
    init_distributed()
    try:
        _load_plugins()
        if args[0] == "cli":
            _run_cli(args[1:])
        else:
            payload = json.loads(args[2]) if len(args) > 2 else {}
            call_function(args[1], payload)
    except BaseException as exc:
        print(f"zoo worker rank {rank()}/{world_size()} failed", file=sys.stderr)
        # Write the error file now, before the (possibly slow) shutdown: if the
        # agent stops this rank meanwhile, the launcher still learns why it failed.
        from torch.distributed.elastic.multiprocessing.errors import get_error_handler

        get_error_handler().record_exception(exc)
        raise
    finally:
        shutdown_distributed()


if __name__ == "__main__":
    main()
