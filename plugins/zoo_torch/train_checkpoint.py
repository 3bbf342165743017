"""Training checkpoints: everything needed to continue a run exactly.

``OUTPUT/checkpoints/step_00000100/`` holds ``state.pt`` (model, optimizer,
schedule, RNG states, data position) and ``trainer_state.json`` (the same
position, readable). A checkpoint is written to a temporary folder and
renamed into place, then ``latest`` (a one-line file) is replaced
atomically, so a crash at any moment leaves the previous checkpoint usable.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codellama_zoo.errors import UsageError, WeightsError

STATE_FILE = "state.pt"
INFO_FILE = "trainer_state.json"
LATEST = "latest"


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(directory: Path, step: int, payload: dict[str, Any], info: dict[str, Any], keep: int) -> Path:
    """Write checkpoint ``step`` under ``directory`` atomically; prune to the newest ``keep``."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"step_{step:08d}"
    tmp = directory / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        torch.save(payload, tmp / STATE_FILE)
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    pointer = directory / f".{LATEST}.tmp-{os.getpid()}"
    pointer.write_text(final.name + "\n")
    os.replace(pointer, directory / LATEST)
    old = sorted(p for p in directory.glob("step_*") if p.is_dir())
    for stale in old[:-keep] if keep > 0 else []:
        shutil.rmtree(stale, ignore_errors=True)
    return final


def latest(directory: Path) -> Path | None:
    pointer = directory / LATEST
    if pointer.is_file():
        candidate = directory / pointer.read_text().strip()
        if (candidate / STATE_FILE).is_file():
            return candidate
    found = sorted(p for p in directory.glob("step_*") if (p / STATE_FILE).is_file())
    return found[-1] if found else None


def resolve(resume: bool | str, output_dir: Path) -> Path | None:
    """The checkpoint ``resume_training`` points at (``True``: the newest in output_dir)."""
    if resume is False or resume in ("", "false", "False"):
        return None
    if resume is True or resume in ("true", "True"):
        found = latest(output_dir / "checkpoints")
        if found is None:
            raise UsageError(
                f"resume_training is true but {output_dir / 'checkpoints'} holds no checkpoint; "
                "train without resume_training first"
            )
        return found
    path = Path(str(resume))
    if (path / STATE_FILE).is_file():
        return path
    if path.is_dir() and latest(path) is not None:
        return latest(path)
    raise UsageError(f"resume_training={str(resume)!r}: no {STATE_FILE} there; pass a step_NNNNNNNN folder")


def load(path: Path) -> dict[str, Any]:
    try:
        return dict(torch.load(path / STATE_FILE, map_location="cpu", weights_only=False))
    except (OSError, RuntimeError, EOFError) as exc:
        raise WeightsError(f"cannot read training checkpoint {path / STATE_FILE}: {exc}") from None
