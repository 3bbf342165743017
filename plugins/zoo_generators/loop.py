"""The decoding loop over any :class:`codellama_zoo.runtime.LanguageModel`.

Prompts of different lengths are left-padded into one batch and prefilled
together; then one token per row per step is chosen and decoded. A row ends
at a stop id (EOS, ``<EOT>``, ``<step>``), at a stop string, or after
``max_new_tokens``. Text comes out incrementally: a piece is held back while
it ends inside a multi-byte character or could be the start of a stop string.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import numpy as np

from codellama_zoo.errors import UsageError


@attrs.define
class Row:
    """One sequence being generated, and what has been shown of it."""

    prompt: list[int]
    decoder: Any  # the tokenizer's StreamDecoder
    stop_strings: tuple[str, ...]
    ids: list[int] = attrs.field(factory=list)
    text: str = ""  # everything decoded so far, stop string cut off
    shown: int = 0  # characters of ``text`` already handed out
    finish_reason: str | None = None  # "stop", "stop_string", "length"

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def add_text(self, piece: str) -> str:
        """Append decoded text; return what can be shown now."""
        self.text += piece
        for stop in self.stop_strings:
            cut = self.text.find(stop)
            if cut >= 0:
                self.text = self.text[:cut]
                self.finish_reason = "stop_string"
        if self.finished:
            return self.release()
        hold = max((_overlap(self.text, s) for s in self.stop_strings), default=0)
        visible = len(self.text) - hold
        out = self.text[self.shown : visible]
        self.shown = max(self.shown, visible)
        return out

    def release(self) -> str:
        out = self.text[self.shown :]
        self.shown = len(self.text)
        return out


def _overlap(text: str, stop: str) -> int:
    """Length of the longest end of ``text`` that begins ``stop``."""
    for n in range(min(len(stop) - 1, len(text)), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0


@attrs.frozen
class Completion:
    """A finished generation: its text, ids and why it ended."""

    text: str
    token_ids: tuple[int, ...]
    finish_reason: str
    prompt_tokens: int


class Decoder:
    """Runs generation with a token chooser (:class:`Greedy`, :class:`Sampler`)."""

    def __init__(self, config: Any, chooser: Any) -> None:
        self.config = config
        self.chooser = chooser

    def steps(
        self,
        lm: Any,
        tokenizer: Any,
        prompts: Sequence[Sequence[int]],
        *,
        stop_ids: Sequence[int] = (),
        strip_leading_space: bool = False,
    ) -> Iterator[tuple[list[str], list[Row]]]:
        """Yield, after each step, the new text of every row and the rows themselves."""
        if not prompts or any(len(p) == 0 for p in prompts):
            raise UsageError("every prompt needs at least one token (is the prompt empty and without BOS?)")
        stops = {int(i) for i in stop_ids if i is not None} | {tokenizer.eos_id}
        longest = max(len(p) for p in prompts)
        limit = int(lm.config.max_seq_len)
        if longest >= limit:
            raise UsageError(
                f"the prompt is {longest} tokens but the model's context is {limit}; shorten the prompt"
            )
        budget = min(self.config.max_new_tokens, limit - longest)
        rows = [
            Row(list(map(int, p)), tokenizer.stream_decoder(strip_leading_space), tuple(self.config.stop))
            for p in prompts
        ]
        if budget <= 0:
            for row in rows:
                row.finish_reason = "length"
            return
        self.chooser.reset()
        batch = len(rows)
        ids = np.full((batch, longest), tokenizer.pad_id, dtype=np.int64)
        mask = np.zeros((batch, longest), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, longest - len(row.prompt) :] = row.prompt
            mask[i, longest - len(row.prompt) :] = 1
        lm.start(batch, longest + budget)
        logits = lm.prefill(ids, mask)
        no_history: list[list[int]] = [[] for _ in rows]
        for step in range(budget):
            # Only the repetition penalty looks at the history; skip the copies otherwise.
            history = [row.prompt + row.ids for row in rows] if self.config.repetition_penalty != 1.0 else no_history
            chosen = self.chooser.choose(np.asarray(logits), history)
            pieces = []
            for row, token in zip(rows, chosen.tolist(), strict=True):
                if row.finished:
                    pieces.append("")
                    continue
                if token in stops:
                    row.finish_reason = "stop"
                    pieces.append(row.add_text(row.decoder.flush()) + row.release())
                    continue
                row.ids.append(int(token))
                piece = row.add_text(row.decoder.push(int(token)))
                if not row.finished and step == budget - 1:
                    row.finish_reason = "length"
                    piece += row.add_text(row.decoder.flush()) + row.release()
                pieces.append(piece)
            yield pieces, rows
            if all(row.finished for row in rows):
                return
            feed = np.where([row.finished for row in rows], tokenizer.pad_id, chosen).astype(np.int64)
            logits = lm.decode(feed)

    def generate(self, lm: Any, tokenizer: Any, prompts: Sequence[Sequence[int]], **kwargs: Any) -> list[Completion]:
        """Every prompt's completion, generated as one left-padded batch."""
        rows: list[Row] = []
        for _, step_rows in self.steps(lm, tokenizer, prompts, **kwargs):
            rows = step_rows
        if not rows:  # nothing could be generated
            return [Completion("", (), "length", len(p)) for p in prompts]
        return [Completion(r.text, tuple(r.ids), r.finish_reason or "length", len(r.prompt)) for r in rows]

    def stream(self, lm: Any, tokenizer: Any, prompt: Sequence[int], **kwargs: Any) -> Iterator[str]:
        """The text of one prompt's completion, piece by piece as it is generated."""
        for pieces, _ in self.steps(lm, tokenizer, [prompt], **kwargs):
            if pieces[0]:
                yield pieces[0]
