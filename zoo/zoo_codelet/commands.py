"""``zoo codelet``: rebuild the shipped default model, and measure it."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("codelet")
def codelet_group() -> None:
    """Build and evaluate the embedded zoo-codelet models."""


@codelet_group.command("build")
@click.option("--build-dir", type=click.Path(path_type=Path), default=Path("build/codelet"), show_default=True,
              help="Where intermediate files (corpus, datasets, training runs) go.")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Where the finished checkpoints go (default: the package's weights folder).")
@click.option("--from-step", default=None, help="Redo this step and every later one (see the step names).")
@click.option("--until-step", default=None, help="Stop after this step.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Passed to both `zoo train` runs, e.g. --set runner_config.max_steps=20 for a smoke test.")
@click.option("--threads", type=int, default=1, show_default=True,
              help="Intra-op threads for each step (1 is fastest on a busy machine; raise it on an idle one).")
def build_command(build_dir: Path, output: Path | None, from_step: str | None, until_step: str | None,
                  overrides: tuple[str, ...], threads: int) -> None:
    """Corpus → tokenizer → datasets → pretrain → finetune → export → evaluate, resumable."""
    from zoo_codelet.pipeline import Pipeline

    Pipeline(build_dir, output=output, train_overrides=overrides, threads=threads).run(from_step=from_step, until_step=until_step)


@codelet_group.command("evaluate")
@click.argument("model", default="zoo-codelet-5m")
@click.option("--weights", type=click.Path(path_type=Path), default=None, help="Checkpoint folder (default: shipped).")
@click.option("--limit", type=int, default=None, help="Evaluate at most this many held-out functions.")
@click.option("--output", type=click.Path(path_type=Path), default=None, help="Write the metrics JSON here.")
def evaluate_command(model: str, weights: Path | None, limit: int | None, output: Path | None) -> None:
    """Held-out loss, infill exact match vs a no-context baseline, and parse rate of completions."""
    import json

    from zoo_codelet.evaluate import evaluate_model

    metrics = evaluate_model(model, weights=weights, limit=limit)
    text = json.dumps(metrics, indent=2)
    if output is not None:
        output.write_text(text + "\n", encoding="utf-8")
    click.echo(text)
