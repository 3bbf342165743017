"""The model card's loss-curve figure, drawn from the training runs' metrics files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from codellama_zoo.errors import UsageError
from zoo_codelet.presets import BASE_NAME, INSTRUCT_NAME


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The JSON lines ``zoo train`` wrote (``metrics.jsonl``), in order."""
    if not path.is_file():
        raise UsageError(f"{path} does not exist; it is copied next to the weights by `zoo codelet build`")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def curves(records: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """``train`` and ``eval`` (step, loss) series."""
    train = [(int(r["step"]), float(r["loss"])) for r in records if "loss" in r]
    held = [(int(r["step"]), float(r["eval_loss"])) for r in records if "eval_loss" in r]
    return {"train": train, "eval": held}


def plot_loss_curves(weights_root: Path, output: Path) -> Path:
    """Two panels: pretraining (FIM, stdlib) and instruct finetuning, train and held-out loss."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("drawing the loss curve needs matplotlib: pip install matplotlib") from None
    panels = [
        (BASE_NAME, ("pretrain", "pretrain-2"), "pretraining, 2 stages (FIM 0.5, stdlib)", "held-out files (plain text)"),
        (INSTRUCT_NAME, ("instruct",), "instruct finetuning (docstring → code)", "held-out pairs (response tokens)"),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, (name, runs, title, eval_label) in zip(axes, panels, strict=True):
        records = [r for r in read_metrics(weights_root / name / "train_metrics.jsonl") if r.get("run", runs[0]) in runs]
        series = curves(records)
        for run in runs[1:]:  # where a later stage starts
            starts = [int(r["step"]) for r in records if r.get("run") == run]
            if starts:
                ax.axvline(min(starts), color="grey", linestyle=":", label=f"{run} starts")
        if series["train"]:
            ax.plot(*zip(*series["train"], strict=True), label="train loss (batch mean)")
        if series["eval"]:
            ax.plot(*zip(*series["eval"], strict=True), "o-", label=f"eval loss: {eval_label}")
        ax.set_title(f"{name}: {title}", fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("cross-entropy (nats/token)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output
