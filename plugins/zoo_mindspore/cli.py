"""``zoo mindspore split|merge``: tensor-parallel checkpoints like the seed's ``transform_ckpt.py``.

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
    """MindSpore tools: split or merge tensor-parallel checkpoints."""


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
