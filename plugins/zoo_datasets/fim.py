"""Fill-in-the-middle training documents, as Code Llama was trained.

A document is cut at two random character positions into prefix, middle
and suffix, then laid out at token level in one of two orders:

* PSM: ``<BOS> <PRE> prefix <SUF> suffix <MID> middle <EOT> <EOS>``
* SPM: ``<BOS> <PRE> <SUF> suffix <MID> prefix middle <EOT> <EOS>``

The sentinels are ids (never encoded text). Pieces that continue earlier
text are encoded without SentencePiece's leading space, matching the
prompts Code Llama's infilling generation builds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from codellama_zoo.errors import UsageError
from zoo_datasets.tokenizer import encode_continuation, fim_ids


def split_document(text: str, rng: np.random.Generator) -> tuple[str, str, str]:
    """Prefix, middle, suffix at two uniformly drawn character positions."""
    lo, hi = sorted(int(x) for x in rng.integers(0, len(text) + 1, size=2))
    return text[:lo], text[lo:hi], text[hi:]


def fim_transform(tokenizer: Any, text: str, rng: np.random.Generator, spm: bool) -> list[int]:
    ids = fim_ids(tokenizer)
    if ids is None:
        raise UsageError(
            "fill-in-the-middle needs a tokenizer with Code Llama's infilling pieces (▁<PRE> ▁<SUF> ▁<MID> ▁<EOT>, "
            "ids 32007-32010 in the 32,016-piece vocabulary); this tokenizer has "
            f"{getattr(tokenizer, 'vocab_size', '?')} pieces without them. Use a 7B/13B Code Llama tokenizer "
            "or set fim_rate to 0"
        )
    prefix, middle, suffix = split_document(text, rng)
    pre = list(tokenizer.encode(prefix)) if prefix else []
    suf = encode_continuation(tokenizer, suffix)
    mid = encode_continuation(tokenizer, middle)
    if spm:
        body = [ids["prefix_id"], ids["suffix_id"], *suf, ids["middle_id"], *pre, *mid]
    else:
        body = [ids["prefix_id"], *pre, ids["suffix_id"], *suf, ids["middle_id"], *mid]
    return [tokenizer.bos_id, *body, ids["eot_id"], tokenizer.eos_id]
