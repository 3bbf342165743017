"""Cutting a raw generation down to the function body the benchmark scores.

HumanEval completions stop where the function ends: at the Codex paper's
stop sequences, or at the first line that starts at column 0 (a top-level
statement), whichever comes first.
"""

from __future__ import annotations

STOP_SEQUENCES: tuple[str, ...] = ("\ndef", "\nclass", "\nif", "\nprint", "\n#")


def truncate_at_stop(text: str, stops: tuple[str, ...] = STOP_SEQUENCES) -> str:
    """``text`` up to (not including) the earliest stop sequence."""
    cut = len(text)
    for stop in stops:
        index = text.find(stop)
        if index != -1:
            cut = min(cut, index)
    return text[:cut]


def truncate_at_top_level(text: str, prompt_ends_line: bool = True) -> str:
    """``text`` up to the first non-blank line that is not indented.

    When the prompt does not end with a newline, the completion's first line
    continues the prompt's last line and is never a new statement.
    """
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if index == 0 and not prompt_ends_line:
            continue
        if line and not line[0].isspace():
            return "\n".join(lines[:index])
    return text


def postprocess_completion(text: str, prompt: str) -> str:
    """The completion HumanEval should execute, from the model's raw text after ``prompt``."""
    text = truncate_at_stop(text)
    return truncate_at_top_level(text, prompt_ends_line=prompt.endswith("\n"))


def postprocess_infill(text: str, split: str) -> str:
    """The infilled middle to execute: generation already stopped at ``<EOT>``.

    For the single-line split only the first line counts (with its newline),
    as the benchmark asks for exactly one line.
    """
    if split == "single-line" and "\n" in text:
        return text[: text.index("\n") + 1]
    return text
