"""``zoo data``: list, prepare and inspect training datasets."""

from __future__ import annotations

import json
from pathlib import Path

import click
import yaml

from codellama_zoo.errors import UsageError


@click.group("data")
def data_group() -> None:
    """Prepare and inspect training datasets."""


@data_group.command("list")
def list_command() -> None:
    """List the registered datasets and their options."""
    from codellama_zoo.registry import get_registry

    for spec in get_registry().datasets:
        click.echo(f"{spec.name}: {spec.description}")
        for key, text in spec.options.items():
            click.echo(f"    -o {key}=...  {text}")


@data_group.command("prepare")
@click.argument("name")
@click.option("--input", "input_path", type=click.Path(path_type=Path), help="File or folder to read.")
@click.option("--tokenizer", "tokenizer_path", required=True, type=click.Path(path_type=Path),
              help="tokenizer.model, or a weights directory holding one.")
@click.option("--seq-length", type=int, required=True, help="Model sequence length; samples hold seq_length+1 tokens.")
@click.option("--output", required=True, type=click.Path(path_type=Path), help="Directory to create.")
@click.option("--format", "fmt", type=click.Choice(["numpy", "mindrecord", "both"]), default="numpy", show_default=True,
              help="Storage: memory-mapped numpy (PyTorch), MindRecord (MindSpore), or both.")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE", help="Dataset option (see `zoo data list`).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def prepare_command(
    name: str, input_path: Path | None, tokenizer_path: Path, seq_length: int, output: Path, fmt: str,
    options: tuple[str, ...], overwrite: bool, quiet: bool,
) -> None:
    """Tokenise dataset NAME into fixed-length samples under --output."""
    from zoo_datasets.prepare import prepare
    from zoo_datasets.tokenizer import load_tokenizer

    parsed = {}
    for item in options:
        if "=" not in item:
            raise UsageError(f"-o {item!r}: expected KEY=VALUE, e.g. -o fim_rate=0.9")
        key, raw = item.split("=", 1)
        parsed[key.strip().replace("-", "_")] = yaml.safe_load(raw) if raw else ""
    formats = ("numpy", "mindrecord") if fmt == "both" else (fmt,)
    meta = prepare(
        name, input=input_path, tokenizer=load_tokenizer(tokenizer_path), seq_length=seq_length, output=output,
        formats=formats, options=parsed, overwrite=overwrite, progress=None if not quiet else False,
    )
    counts = meta["counts"]
    click.echo(
        f"wrote {meta['count']} samples of {meta['sample_length']} tokens to {output} "
        f"({', '.join(meta['formats'])}); counts: {json.dumps(counts)}"
    )
    if counts.get("fully_masked"):
        click.echo(
            f"zoo: warning: {counts['fully_masked']} samples have no response token left after truncation "
            "(nothing to learn); raise --seq-length or use a shorter template",
            err=True,
        )


@data_group.command("inspect")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--show", type=int, default=0, help="Decode the first N samples (needs --tokenizer).")
@click.option("--tokenizer", "tokenizer_path", type=click.Path(path_type=Path))
def inspect_command(path: Path, show: int, tokenizer_path: Path | None) -> None:
    """Print a prepared dataset's metadata (and optionally decode samples)."""
    from zoo_datasets.storage import open_samples, read_meta

    samples = open_samples(path)
    meta = read_meta(path) or getattr(samples, "meta", {})
    click.echo(json.dumps({**meta, "records": len(samples)}, indent=2))
    if show:
        if tokenizer_path is None:
            raise UsageError("--show needs --tokenizer to decode the samples")
        from zoo_datasets.tokenizer import load_tokenizer

        tok = load_tokenizer(tokenizer_path)
        for i, sample in enumerate(samples):
            if i >= show:
                break
            click.echo(f"--- sample {i}")
            click.echo(tok.decode([int(t) for t in sample["input_ids"]]))


@data_group.command("convert-alpaca")
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("destination", type=click.Path(path_type=Path))
def convert_alpaca_command(source: Path, destination: Path) -> None:
    """Write an Alpaca JSON file in the conversation format (human/gpt turns)."""
    from zoo_datasets.alpaca import read
    from zoo_datasets.atomic import write_text_atomic

    records = list(read(source))
    write_text_atomic(destination, json.dumps(records, ensure_ascii=False, indent=2) + "\n")
    click.echo(f"wrote {len(records)} conversations to {destination}")
