"""`zoo mindspore ...`: tensor-parallel checkpoint merge and split."""

from __future__ import annotations

import click


@click.group("mindspore")
def mindspore_group() -> None:
    """MindSpore tools: merge or split tensor-parallel checkpoints."""
