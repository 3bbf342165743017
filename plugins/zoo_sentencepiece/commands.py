"""The ``zoo tokenizer`` command group: train and inspect SentencePiece models."""

from __future__ import annotations

import json

import click

from codellama_zoo import hookimpl


@click.group("tokenizer")
def tokenizer_group() -> None:
    """Train and inspect SentencePiece tokenizers."""


@tokenizer_group.command("train")
@click.option(
    "--input", "inputs", multiple=True, required=True, type=click.Path(),
    help="A source file or a directory of them; repeat for several.",
)
@click.option("--vocab-size", type=int, required=True, help="Number of pieces, e.g. 4096.")
@click.option("--output", type=click.Path(), required=True, help="Where to write the tokenizer.model.")
@click.option("--model-type", type=click.Choice(["bpe", "unigram"]), default="bpe", show_default=True)
@click.option("--extensions", default=".py", show_default=True, help="Comma-separated file endings to read.")
@click.option("--max-sentences", type=int, default=200_000, show_default=True,
              help="Most text chunks (of whole lines, under 4 KiB) to train on.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="Print nothing on success.")
def train_command(
    inputs: tuple[str, ...], vocab_size: int, output: str, model_type: str, extensions: str,
    max_sentences: int, seed: int, quiet: bool,
) -> None:
    """Train a tokenizer with Code Llama's special pieces on source code."""
    from zoo_sentencepiece.training import train_tokenizer

    exts = tuple(e.strip() for e in extensions.split(",") if e.strip())
    result = train_tokenizer(
        inputs, output, vocab_size, model_type=model_type, extensions=exts, max_sentences=max_sentences, seed=seed
    )
    if not quiet:
        click.echo(result.summary())


@tokenizer_group.command("encode")
@click.argument("tokenizer_path", type=click.Path(exists=True))
@click.argument("text")
def encode_command(tokenizer_path: str, text: str) -> None:
    """Show the pieces and ids TEXT becomes (escape sequences like \\n are honoured)."""
    from zoo_sentencepiece.plugin import load_tokenizer

    tok = load_tokenizer(tokenizer_path)
    decoded = text.encode("latin-1", "backslashreplace").decode("unicode_escape") if "\\" in text else text
    ids = tok.encode(decoded)
    # Pieces shown JSON-escaped, so a newline inside a piece stays visible.
    click.echo(" ".join(f"{json.dumps(tok.id_to_piece(i), ensure_ascii=False)[1:-1]}:{i}" for i in ids))
    click.echo(f"{len(ids)} pieces for {len(decoded)} characters")


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(tokenizer_group)
