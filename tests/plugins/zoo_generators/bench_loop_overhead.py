"""How much time the decoding loop itself adds per token (no model: logits are free).

Run: .venv/bin/python tests/plugins/zoo_generators/bench_loop_overhead.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import attrs
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]

from generator_fakes import CONFIG  # noqa: E402

from codellama_zoo.config import GenerateConfig  # noqa: E402
from zoo_generators.loop import Decoder  # noqa: E402
from zoo_generators.sampling import Greedy, Sampler  # noqa: E402
from zoo_sentencepiece.tokenizer import SentencePieceTokenizer  # noqa: E402

TOKENIZER = HERE.parents[2].parent / "shared" / "assets" / "llama2-tokenizer" / "tokenizer.model"


class TableLM:
    """Cycles through 64 fixed rows of random logits over a 32,016-piece vocabulary."""

    backend = device = dtype = attention = "none"

    def __init__(self) -> None:
        self.config = attrs.evolve(CONFIG, vocab_size=32016, max_seq_len=4096)
        self.table = np.random.default_rng(0).standard_normal((64, 32016)).astype(np.float32) * 3
        self.step = 0

    def start(self, batch_size: int, max_len: int) -> None:
        self.batch = batch_size

    def prefill(self, ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self._next()

    def decode(self, next_ids: np.ndarray) -> np.ndarray:
        return self._next()

    def _next(self) -> np.ndarray:
        self.step += 1
        return self.table[(np.arange(self.batch) + self.step) % 64]


def main() -> None:
    tok = SentencePieceTokenizer(TOKENIZER)
    cases = [
        ("greedy", Greedy, GenerateConfig(max_new_tokens=512)),
        ("sample T=0.8 top-k 40 top-p 0.95", Sampler,
         GenerateConfig(max_new_tokens=512, temperature=0.8, top_k=40, top_p=0.95, seed=0)),
        ("sample T=0.8 top-p 0.95 rep 1.1", Sampler,
         GenerateConfig(max_new_tokens=512, temperature=0.8, top_p=0.95, repetition_penalty=1.1, seed=0)),
    ]  # fmt: skip
    for name, chooser, config in cases:
        for batch in (1, 8):
            decoder = Decoder(config, chooser(config))
            start = time.perf_counter()
            out = decoder.generate(TableLM(), tok, [[1, 500, 600]] * batch, stop_ids=())
            seconds = time.perf_counter() - start
            steps = max(len(c.token_ids) for c in out)
            print(f"{name:34s} batch {batch}: {seconds * 1e3 / steps:6.3f} ms per step")


if __name__ == "__main__":
    main()
