"""``zoo mindspore split|merge|bench``: tensor-parallel checkpoints (the seed's ``transform_ckpt.py``) and a benchmark.

``split`` reads any checkpoint ``zoo`` can detect (HF, Meta, MindSpore) and
writes ``DST/rank_R/`` shards for ``--model-parallel`` ranks; ``merge`` joins
``SRC/rank_R/`` shards into one MindSpore checkpoint. The split rules of each
tensor are documented in :mod:`zoo_mindspore.distributed`.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.group("mindspore")
def mindspore_group() -> None:
    """MindSpore tools: split or merge tensor-parallel checkpoints, benchmark decode."""


_FORMAT = click.option(
    "--format",
    "kind",
    type=click.Choice(["ckpt", "safetensors"]),
    default="ckpt",
    show_default=True,
    help="File format to write: MindSpore .ckpt or MindSpore safetensors.",
)
_DTYPE = click.option(
    "--dtype", type=click.Choice(["fp32", "fp16", "bf16"]), default=None, help="Cast tensors (default: keep)."
)


@mindspore_group.command("split")
@click.argument("src", type=click.Path(exists=True, path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--model-parallel", "-mp", "model_parallel", type=int, required=True, help="Number of tensor-parallel ranks.")
@_FORMAT
@_DTYPE
def split_command(src: Path, dst: Path, model_parallel: int, kind: str, dtype: str | None) -> None:
    """Split the checkpoint in SRC into DST/rank_0 .. rank_{N-1}."""
    from zoo_mindspore.backend import require_mindspore
    from zoo_mindspore.distributed import split_checkpoint

    require_mindspore()
    files = split_checkpoint(src, dst, model_parallel, kind, dtype)
    click.echo(f"wrote {len(files)} shards: {', '.join(str(f) for f in files)}")


@mindspore_group.command("merge")
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@_FORMAT
@_DTYPE
def merge_command(src: Path, dst: Path, kind: str, dtype: str | None) -> None:
    """Merge the shards in SRC/rank_*/ into one checkpoint in DST."""
    from zoo_mindspore.backend import require_mindspore
    from zoo_mindspore.distributed import merge_checkpoint

    require_mindspore()
    file = merge_checkpoint(src, dst, kind, dtype)
    click.echo(f"wrote {file}")


@mindspore_group.command("bench")
@click.option("--config", "which", type=click.Choice(["micro", "small", "7b-2l", "all"]), default="small",
              show_default=True, help="A `zoo bench` configuration.")
@click.option("--threads", type=int, default=None, help="CPU threads for both backends (default: torch's).")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--prompt-len", type=int, default=None, help="Prompt length (default per config).")
@click.option("--new-tokens", type=int, default=None, help="Decoded tokens (default per config).")
@click.option("--repeats", type=int, default=3, show_default=True, help="Best of N timings.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the results here.")
def bench_command(which: str, threads: int | None, batch: int, prompt_len: int | None, new_tokens: int | None,
                  repeats: int, json_path: Path | None) -> None:
    """Decode tokens/s of the MindSpore backend (compiled) vs the PyTorch backend, same weights."""
    import json

    from codellama_zoo.errors import BackendUnavailableError
    from codellama_zoo.registry import get_registry
    from zoo_mindspore.backend import require_mindspore

    require_mindspore()
    if "torch" not in get_registry().backends or not get_registry().backends.get("torch").is_available():
        raise BackendUnavailableError("the benchmark compares against the torch backend, which is not available")
    from zoo_mindspore.bench import run_bench

    results = run_bench(which, threads, batch, prompt_len, new_tokens, repeats, echo=click.echo)
    if json_path is not None:
        json_path.write_text(json.dumps(results, indent=2))
