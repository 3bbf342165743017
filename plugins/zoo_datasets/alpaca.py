"""code-alpaca instruction records → conversations → prompt-masked samples.

The conversion is the one the seed's ``alpaca_converter.py`` performs: the
Stanford Alpaca prompt (with or without an input) becomes the human turn,
the output the gpt turn. Tokenising puts a chat template around the turns
(``vicuna``, as the seed's ``llama_preprocess.py``, or Code Llama Instruct's
``[INST]``) and masks every prompt token's label with -100 so that only the
responses are learned.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from zoo_datasets.errors import DatasetError

IGNORE_INDEX = -100

PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
TEMPLATES = ("vicuna", "inst")


def _load_records(path: Path) -> list[Any]:
    """A JSON array, or JSON Lines (one object per line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(path, "file does not exist") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(path, f"not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise DatasetError(path, "file is empty; expected a JSON array of {instruction, input, output} records")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            record = _failing_record(text)
            where = f"line {exc.lineno} column {exc.colno}"
            raise DatasetError(path, f"malformed JSON at {where}: {exc.msg}", record=record) from None
        if not data:
            raise DatasetError(path, "the JSON array is empty; nothing to train on")
        return list(data)
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DatasetError(path, f"malformed JSON Lines record (line {number}): {exc.msg}", record=len(records) + 1) from None
    return records


def _failing_record(text: str) -> int | None:
    """1-based number of the array element that does not parse, if it can be found."""
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    number = 0
    while pos < len(text):
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return None
        number += 1
        try:
            _, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return number
    return None


def _text_field(
    path: Path, number: int, record: dict[str, Any], name: str, required: bool, allow_empty: bool = False
) -> str:
    if name not in record:
        if required:
            raise DatasetError(path, "missing field", record=number, field=name)
        return ""
    value = record[name]
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise DatasetError(path, f"expected a string, got {type(value).__name__}", record=number, field=name)
    if required and not allow_empty and not value.strip():
        raise DatasetError(path, "is empty", record=number, field=name)
    return value


def to_conversation(record: dict[str, str], number: int) -> dict[str, Any]:
    """One Alpaca record as the seed's conversation record (human/gpt turns)."""
    template = PROMPT_WITH_INPUT if record.get("input", "") != "" else PROMPT_NO_INPUT
    return {
        "id": str(number),
        "conversations": [
            {"from": "human", "value": template.format_map(record)},
            {"from": "gpt", "value": record["output"]},
        ],
    }


def _check_conversation(path: Path, number: int, record: dict[str, Any]) -> dict[str, Any]:
    turns = record["conversations"]
    if not isinstance(turns, list) or not turns:
        raise DatasetError(path, "expected a non-empty list of turns", record=number, field="conversations")
    for i, turn in enumerate(turns):
        field = f"conversations[{i}]"
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise DatasetError(path, "expected {from, value}", record=number, field=field)
        expected = "human" if i % 2 == 0 else "gpt"
        if turn["from"] != expected:
            raise DatasetError(path, f"expected from={expected!r}, got {turn['from']!r}", record=number, field=field + ".from")
        if not isinstance(turn["value"], str):
            raise DatasetError(path, "expected a string", record=number, field=field + ".value")
    return {"id": str(record.get("id", number)), "conversations": turns}


def read(path: str | Path) -> Iterator[dict[str, Any]]:
    """Conversation records from an Alpaca file (or an already converted conversation file)."""
    p = Path(path)
    for number, record in enumerate(_load_records(p), start=1):
        if not isinstance(record, dict):
            raise DatasetError(p, f"expected a JSON object, got {type(record).__name__}", record=number)
        if "conversations" in record:
            yield _check_conversation(p, number, record)
            continue
        fields = {
            "instruction": _text_field(p, number, record, "instruction", required=True),
            "input": _text_field(p, number, record, "input", required=False),
            # Two of the real 2k records have an empty output: learnable as "just stop" (EOS).
            "output": _text_field(p, number, record, "output", required=True, allow_empty=True),
        }
        yield to_conversation(fields, number)


def render_turn(template: str, human: str, first: bool) -> str:
    """The prompt text in front of one gpt answer."""
    if template == "vicuna":
        return f"{VICUNA_SYSTEM} USER: {human} ASSISTANT:" if first else f"USER: {human} ASSISTANT:"
    return f"[INST] {human.strip()} [/INST]"


def tokenize_conversation(tokenizer: Any, conversation: dict[str, Any], template: str) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` for one conversation; prompt tokens labelled -100.

    Each turn is encoded on its own, so the boundary between prompt and
    answer is exact: every answer token (and the EOS closing it) is learned,
    no prompt token is.
    """
    if template not in TEMPLATES:
        raise DatasetError("<options>", f"unknown template {template!r}; allowed: {', '.join(TEMPLATES)}")
    ids: list[int] = [tokenizer.bos_id]
    labels: list[int] = [IGNORE_INDEX]
    turns = conversation["conversations"]
    for i in range(0, len(turns) - 1, 2):
        if i and template == "inst":  # Llama 2 chat: every [INST] round starts with BOS
            ids.append(tokenizer.bos_id)
            labels.append(IGNORE_INDEX)
        prompt = tokenizer.encode(render_turn(template, turns[i]["value"], first=i == 0))
        answer = tokenizer.encode(turns[i + 1]["value"].strip() if template == "inst" else turns[i + 1]["value"])
        answer = [*answer, tokenizer.eos_id]
        ids += prompt + answer
        labels += [IGNORE_INDEX] * len(prompt) + answer
    return ids, labels


def fit(ids: list[int], labels: list[int], length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Truncate or pad to ``length``; padding is never learned."""
    truncated = len(ids) > length
    ids, labels = ids[:length], labels[:length]
    pad = length - len(ids)
    out_ids = np.asarray(ids + [pad_id] * pad, dtype=np.int32)
    out_labels = np.asarray(labels + [IGNORE_INDEX] * pad, dtype=np.int32)
    return out_ids, out_labels, truncated


def preprocess(
    records: Iterator[dict[str, Any]], tokenizer: Any, seq_length: int, stats: dict[str, Any], template: str = "vicuna"
) -> Iterator[dict[str, np.ndarray]]:
    """Prompt-masked samples of ``seq_length + 1`` tokens, one per conversation."""
    stats.update(documents=0, samples=0, tokens=0, truncated=0, fully_masked=0, label_tokens=0)
    for conversation in records:
        ids, labels = tokenize_conversation(tokenizer, conversation, template)
        input_ids, out_labels, truncated = fit(ids, labels, seq_length + 1, tokenizer.pad_id)
        learned = int((out_labels != IGNORE_INDEX).sum())
        stats["documents"] += 1
        stats["samples"] += 1
        stats["tokens"] += min(len(ids), seq_length + 1)
        stats["truncated"] += int(truncated)
        stats["fully_masked"] += int(learned == 0)
        stats["label_tokens"] += learned
        yield {"input_ids": input_ids, "labels": out_labels}
