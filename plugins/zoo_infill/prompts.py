"""Infill prompts at token level, as Code Llama was trained on them.

The suffix is encoded without SentencePiece's implicit leading space, so
the model sees exactly the characters that follow the hole. Both layouts
end generation at ``▁<EOT>``.
"""

from __future__ import annotations

from typing import Any

FILL_MARKER = "<FILL_ME>"


def build_psm(tokenizer: Any, prefix: str, suffix: str) -> list[int]:
    """Prefix-suffix-middle: ``<s>▁<PRE> prefix ▁<SUF>suffix ▁<MID>``."""
    pre, suf, mid = tokenizer.require("prefix"), tokenizer.require("suffix"), tokenizer.require("middle")
    return [tokenizer.bos_id, pre, *tokenizer.encode(prefix), suf, *tokenizer.encode_nospace(suffix), mid]


def build_spm(tokenizer: Any, prefix: str, suffix: str) -> list[int]:
    """Suffix-prefix-middle: ``<s>▁<PRE>▁<SUF>suffix ▁<MID> prefix``."""
    pre, suf, mid = tokenizer.require("prefix"), tokenizer.require("suffix"), tokenizer.require("middle")
    return [tokenizer.bos_id, pre, suf, *tokenizer.encode_nospace(suffix), mid, *tokenizer.encode(prefix)]


def split_fill_marker(text: str) -> tuple[str, str]:
    """``(prefix, suffix)`` around the one ``<FILL_ME>`` in ``text``."""
    from codellama_zoo.errors import UsageError

    count = text.count(FILL_MARKER)
    if count != 1:
        raise UsageError(
            f"an infill prompt needs exactly one {FILL_MARKER} marker where the code goes, found {count}; "
            "or pass --prefix and --suffix"
        )
    prefix, suffix = text.split(FILL_MARKER)
    return prefix, suffix
