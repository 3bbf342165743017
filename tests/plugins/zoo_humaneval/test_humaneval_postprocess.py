"""Stop sequences and the top-level-statement cut."""

from __future__ import annotations

from zoo_humaneval.postprocess import postprocess_completion, postprocess_infill, truncate_at_stop

PROMPT = 'def add(a, b):\n    """Add."""\n'


def test_each_stop_sequence_ends_the_completion() -> None:
    body = "    return a + b\n"
    for tail in ("\ndef sub(a, b):", "\nclass X:", "\nif __name__ == '__main__':", "\nprint(add(1, 2))", "\n# test"):
        assert postprocess_completion(body + tail, PROMPT) == "    return a + b\n"


def test_earliest_stop_wins() -> None:
    assert truncate_at_stop("x\nprint(1)\ndef f(): pass") == "x"


def test_top_level_statement_ends_the_completion() -> None:
    text = "    return a + b\n\n\nassert add(1, 2) == 3\n"
    assert postprocess_completion(text, PROMPT) == "    return a + b\n\n"
    text = "    return a + b\nx = 1\n"
    assert postprocess_completion(text, PROMPT) == "    return a + b"


def test_indented_code_blank_lines_and_nested_keywords_are_kept() -> None:
    text = "    if a:\n        return a\n\n    # note\n    def inner():\n        print(b)\n    return inner()\n"
    assert postprocess_completion(text, PROMPT) == text


def test_first_line_continues_a_prompt_without_newline() -> None:
    prompt = "def f():\n    return"
    assert postprocess_completion(" 1\n    \nfoo()", prompt) == " 1\n    "
    assert postprocess_completion("x = 1", PROMPT) == ""


def test_infill_single_line_keeps_one_line() -> None:
    assert postprocess_infill("    x = 1\n    y = 2\n", "single-line") == "    x = 1\n"
    assert postprocess_infill("    x = 1\n    y = 2\n", "multi-line") == "    x = 1\n    y = 2\n"
    assert postprocess_infill("    x = 1", "single-line") == "    x = 1"
