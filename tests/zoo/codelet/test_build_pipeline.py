"""`zoo codelet build` end to end on the real standard library, with 2-step training runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codellama_zoo.api import load
from zoo_codelet.pipeline import Pipeline
from zoo_codelet.presets import BASE_NAME, INSTRUCT_NAME, WEIGHT_FILES


@pytest.mark.slow
def test_build_runs_every_training_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    build, out = tmp_path / "build", tmp_path / "weights"
    smoke = ("runner_config.max_steps=2", "do_eval=false", "callbacks=[]")
    Pipeline(build, output=out, train_overrides=smoke).run(until_step="export-instruct")
    for name in (BASE_NAME, INSTRUCT_NAME):
        assert all((out / name / f).is_file() for f in WEIGHT_FILES)
        provenance = json.loads((out / name / "provenance.json").read_text())
        assert provenance["heldout_files"] and provenance["train_configs"][0].endswith("pretrain.yaml")
    runs = {json.loads(line)["run"] for line in (out / INSTRUCT_NAME / "train_metrics.jsonl").read_text().splitlines()}
    assert runs == {"pretrain", "pretrain-2", "instruct"}
    # The output is a runnable checkpoint of the registered architecture.
    model = load(INSTRUCT_NAME, weights=out / INSTRUCT_NAME, device="cpu", dtype="fp32")
    assert isinstance(model.chat([{"role": "user", "content": "hi"}], max_new_tokens=3), str)
    # A finished step is skipped on the next run.
    Pipeline(build, output=out, train_overrides=smoke).run(until_step="pretrain")
    assert (build / "done" / "pretrain").is_file()
