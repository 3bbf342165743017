"""The one-command build of the shipped codelet weights (``zoo codelet build``, ``make default-model``).

Every step runs a public ``zoo`` command (tokenizer training, dataset
preparation, ``zoo train`` with the shipped YAML configs, ``zoo convert``),
so the shipped weights are exactly what the project's own pipeline makes.
A finished step leaves a marker in ``<build>/done/``; rerunning resumes
after the last finished step (``--from-step`` redoes one and all later).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click

from codellama_zoo.errors import UsageError
from zoo_codelet.corpus import HELDOUT_PERCENT, SKIP_DIRS, build_corpus, stdlib_root
from zoo_codelet.presets import BASE_NAME, CODELET_CONFIG, CONFIGS_DIR, INSTRUCT_NAME, SEQ_LENGTH, WEIGHTS_ROOT

INSTRUCT_SEQ_LENGTH = 256  # docstring pairs are short; longer ones are dropped, not truncated
FIM_RATE = 0.5
EVAL_INFILL_TASKS = 200
HUMANEVAL_NEW_TOKENS = 192  # of the ~490 held-out functions, spread over the files (CPU time)
SPM_RATE = 0.5


def zoo_executable() -> list[str]:
    """The ``zoo`` of this interpreter's environment."""
    candidate = Path(sys.executable).parent / "zoo"
    if candidate.is_file():
        return [str(candidate)]
    found = shutil.which("zoo")
    if found is None:
        raise UsageError("cannot find the `zoo` command next to this Python; install codellama-zoo in this environment")
    return [found]


class Pipeline:
    """Corpus → tokenizer → datasets → pretrain (2 stages) → export → finetune → export → evaluate."""

    def __init__(self, build_dir: Path, *, output: Path | None = None, train_overrides: tuple[str, ...] = (),
                 threads: int = 1) -> None:
        self.build = Path(build_dir)
        self.threads = threads
        self.output = Path(output) if output is not None else WEIGHTS_ROOT
        self.train_overrides = train_overrides
        self.corpus = self.build / "corpus"
        self.tokenizer = self.build / "tokenizer.model"
        self.data = self.build / "data"
        self.steps: list[tuple[str, Callable[[], None]]] = [
            ("corpus", self.step_corpus),
            ("tokenizer", self.step_tokenizer),
            ("data", self.step_data),
            ("pretrain", self.step_pretrain),
            ("pretrain-2", self.step_pretrain_2),
            ("export-base", self.step_export_base),
            ("finetune", self.step_finetune),
            ("export-instruct", self.step_export_instruct),
            ("evaluate", self.step_evaluate),
        ]

    # -- driver -------------------------------------------------------------
    def _marker(self, name: str) -> Path:
        return self.build / "done" / name

    def run(self, from_step: str | None = None, until_step: str | None = None) -> None:
        names = [n for n, _ in self.steps]
        for value in (from_step, until_step):
            if value is not None and value not in names:
                raise UsageError(f"unknown step {value!r}; steps: {', '.join(names)}")
        redo = names.index(from_step) if from_step else len(names)
        last = names.index(until_step) if until_step else len(names) - 1
        for i, (name, step) in enumerate(self.steps[: last + 1]):
            marker = self._marker(name)
            if i < redo and marker.exists():
                click.echo(f"[codelet] {name}: done earlier ({marker})", err=True)
                continue
            marker.unlink(missing_ok=True)
            click.echo(f"[codelet] {name}: starting", err=True)
            start = time.time()
            step()
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(f"{time.time() - start:.0f} s\n", encoding="utf-8")
            click.echo(f"[codelet] {name}: finished in {time.time() - start:.0f} s", err=True)

    def zoo(self, *args: str) -> None:
        command = [*zoo_executable(), *args]
        click.echo("[codelet] $ " + " ".join(command), err=True)
        # One intra-op thread by default: on a shared machine, OpenMP threads that wait
        # for each other are far slower than one (measured 2.3x on 2 busy cores).
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        result = subprocess.run(command, check=False, env=env)
        if result.returncode != 0:
            raise UsageError(f"step command failed with exit code {result.returncode}: {' '.join(command)}")

    # -- steps --------------------------------------------------------------
    def step_corpus(self) -> None:
        if self.corpus.exists():
            shutil.rmtree(self.corpus)
        manifest = build_corpus(self.corpus, stdlib_root())
        click.echo(
            f"[codelet] corpus: {manifest['train_files']} train files ({manifest['train_documents']} documents), "
            f"{len(manifest['heldout_files'])} held-out files from Python {manifest['python']} ({manifest['source']})",
            err=True,
        )

    def step_tokenizer(self) -> None:
        self.zoo("tokenizer", "train", "--input", str(self.corpus / "train"), "--vocab-size",
                 str(CODELET_CONFIG.vocab_size), "--output", str(self.tokenizer))

    def _prepare(self, dataset: str, source: Path, name: str, seq_length: int, *options: str) -> None:
        args = ["data", "prepare", dataset, "--input", str(source), "--tokenizer", str(self.tokenizer),
                "--seq-length", str(seq_length), "--output", str(self.data / name), "--overwrite", "--quiet"]
        for option in options:
            args += ["-o", option]
        self.zoo(*args)

    def step_data(self) -> None:
        self._prepare("code", self.corpus / "train", "pretrain", SEQ_LENGTH,
                      f"fim_rate={FIM_RATE}", f"spm_rate={SPM_RATE}", "seed=0")
        self._prepare("code", self.corpus / "heldout", "heldout", SEQ_LENGTH)
        for split in ("train", "heldout"):
            self._prepare("docstrings", stdlib_root(), f"instruct-{split}", INSTRUCT_SEQ_LENGTH,
                          f"split={split}", f"heldout_percent={HELDOUT_PERCENT}", f"skip_dirs={SKIP_DIRS}",
                          "template=inst")

    def _train(self, config: str, run: str, *overrides: str) -> None:
        args = ["train", str(CONFIGS_DIR / config), "--quiet", "--set", f"output_dir={self.build / run}"]
        for item in (*overrides, *self.train_overrides):
            args += ["--set", item]
        self.zoo(*args)

    def step_pretrain(self) -> None:
        if (self.build / "pretrain").exists():
            shutil.rmtree(self.build / "pretrain")
        self._train("pretrain.yaml", "pretrain",
                    f"train_dataset.data_loader.dataset_dir={self.data / 'pretrain'}",
                    f"eval_dataset.data_loader.dataset_dir={self.data / 'heldout'}")

    def step_pretrain_2(self) -> None:
        if (self.build / "pretrain-2").exists():
            shutil.rmtree(self.build / "pretrain-2")
        self._train("pretrain_stage2.yaml", "pretrain-2",
                    f"load_checkpoint={self.build / 'pretrain' / 'weights'}",
                    f"train_dataset.data_loader.dataset_dir={self.data / 'pretrain'}",
                    f"eval_dataset.data_loader.dataset_dir={self.data / 'heldout'}")

    def step_finetune(self) -> None:
        if (self.build / "instruct").exists():
            shutil.rmtree(self.build / "instruct")
        self._train("instruct.yaml", "instruct",
                    f"load_checkpoint={self.build / 'pretrain-2' / 'weights'}",
                    f"train_dataset.data_loader.dataset_dir={self.data / 'instruct-train'}",
                    f"eval_dataset.data_loader.dataset_dir={self.data / 'instruct-heldout'}")

    def _export(self, runs: tuple[str, ...], configs: tuple[str, ...], name: str) -> None:
        """The last run's weights as bf16 in the package, with the tokenizer, metrics and provenance."""
        source = self.build / runs[-1] / "weights"
        if not (source / "config.json").is_file():
            raise UsageError(f"{source} holds no trained weights; the {runs[-1]} step did not finish")
        target = self.output / name
        self.zoo("convert", str(source), str(target), "--to", "zoo", "--dtype", "bf16", "--overwrite", "--quiet")
        shutil.copyfile(self.tokenizer, target / "tokenizer.model")
        # One metrics file across the runs, steps counted on from the previous run.
        lines, offset = [], 0
        for run in runs:
            records = [json.loads(x) for x in (self.build / run / "metrics.jsonl").read_text(encoding="utf-8").split("\n") if x]
            for record in records:
                lines.append(json.dumps({**record, "step": record["step"] + offset, "run": run}))
            offset += max((r["step"] for r in records), default=0)
        (target / "train_metrics.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        manifest = json.loads((self.corpus / "manifest.json").read_text(encoding="utf-8"))
        provenance = {
            "model": name,
            "built_by": "zoo codelet build",
            "train_configs": [f"zoo/zoo_codelet/configs/{c}" for c in configs],
            "python": manifest["python"],
            "corpus_sha256": manifest["sha256"],
            "heldout_files": manifest["heldout_files"],
        }
        (target / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")

    def step_export_base(self) -> None:
        self._export(("pretrain", "pretrain-2"), ("pretrain.yaml", "pretrain_stage2.yaml"), BASE_NAME)

    def step_export_instruct(self) -> None:
        self._export(("pretrain", "pretrain-2", "instruct"),
                     ("pretrain.yaml", "pretrain_stage2.yaml", "instruct.yaml"), INSTRUCT_NAME)

    def step_evaluate(self) -> None:
        for name in (BASE_NAME, INSTRUCT_NAME):
            metrics_file = self.output / name / "metrics.json"
            self.zoo("codelet", "evaluate", name, "--weights", str(self.output / name), "--limit", str(EVAL_INFILL_TASKS),
                     "--output", str(metrics_file))
            # HumanEval with `zoo eval`: one prompt at a time, so a long prompt never shortens
            # another's budget in the 512-token context.
            run = self.build / "humaneval" / name
            self.zoo("eval", "humaneval", name, "--weights", str(self.output / name), "--output", str(run),
                     "--batch-size", "1", "--max-new-tokens", str(HUMANEVAL_NEW_TOKENS), "--device", "cpu",
                     "--dtype", "fp32", "-j", "1", "--quiet")
            summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
            metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
            metrics["humaneval"] = {k: summary.get(k) for k in ("pass@1", "solved", "problems", "max_new_tokens",
                                                                 "temperature", "results")}
            metrics_file.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        from zoo_codelet.report import plot_loss_curves

        plot_loss_curves(self.output, Path("docs") / "codelet-loss.png")
