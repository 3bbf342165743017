"""``zoo mindspore bench``: the MindSpore backend's compiled decode vs the PyTorch backend's, same weights.

Uses ``zoo bench``'s configurations (``zoo_torch.bench.bench_configs``). One
child process loads both backends with the same random weights (the torch
model's seeded ``init_weights``, copied into the MindSpore Cell by name) and
the same number of CPU threads, then times them *interleaved*, best of
``repeats`` each, so that load from other processes hits both alike. When the
fused CPU decode kernels are in use (:mod:`zoo_mindspore.cpu_kernels`), the
same Cell through MindSpore's operators alone is timed too. Both go
through the :class:`~codellama_zoo.runtime.LanguageModel` API (numpy logits +
argmax per token, what ``zoo run`` does); the MindSpore steps are compiled
with ``mindspore.jit`` and the first (compiling) round is not timed. Reports
tokens/s, the MindSpore/PyTorch ratio, and whether the greedy tokens agree.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

SEED = 1234


def _timed_rounds(lm: Any, ids: Any, mask: Any, new_tokens: int) -> tuple[float, float, list[int]]:
    """(prefill seconds, decode seconds, greedy tokens of row 0) of one generation."""
    t0 = time.perf_counter()
    lm.start(ids.shape[0], ids.shape[1] + new_tokens)
    logits = lm.prefill(ids, mask)
    t1 = time.perf_counter()
    tokens = []
    for _ in range(new_tokens):
        nxt = logits.argmax(-1)
        tokens.append(int(nxt[0]))
        logits = lm.decode(nxt)
    return t1 - t0, time.perf_counter() - t1, tokens


def child_both(config_name: str, batch: int, prompt_len: int, new_tokens: int, repeats: int,
               threads: int) -> dict[str, Any]:
    os.environ.setdefault("GLOG_v", "3")
    import numpy as np
    import torch

    from zoo_mindspore import weights
    from zoo_mindspore.backend import load_model as load_mindspore
    from zoo_mindspore.backend import set_cpu_threads
    from zoo_mindspore.runner import MindSporeLanguageModel
    from zoo_torch.bench import _prompt, bench_configs
    from zoo_torch.runtime import load_model as load_torch

    torch.set_num_threads(threads)
    set_cpu_threads(threads)
    config = bench_configs()[config_name][0]
    torch_lm = load_torch(config, None, device="cpu", dtype="fp32", attention="auto", seed=SEED)
    state = {k: v.detach().numpy() for k, v in torch_lm.model.state_dict().items() if not k.endswith("inv_freq")}
    ms_lm = load_mindspore(config, None, device="cpu", dtype="fp32", attention="auto")
    weights.load_into(ms_lm.model, state, source="benchmark weights")
    del state
    ids = _prompt(config, batch, prompt_len).numpy()
    mask = np.ones_like(ids)
    models = {"torch": torch_lm, "mindspore": ms_lm}
    labels = {"torch": f"zoo_torch ({torch_lm.attention})",
              "mindspore": f"zoo_mindspore (jit, {ms_lm.attention}{', cpu kernels' if ms_lm.kernels else ''})"}
    if ms_lm.kernels is not None:  # the same Cell through MindSpore's own operators only, for comparison
        models["mindspore-ops"] = MindSporeLanguageModel(
            ms_lm.model, config, device="cpu", dtype="fp32", attention=ms_lm.attention, compiled=True
        )
        labels["mindspore-ops"] = f"zoo_mindspore (jit, {ms_lm.attention}, ops only)"
    best = {name: [float("inf"), float("inf")] for name in models}
    tokens: dict[str, list[int]] = {}
    for lm in models.values():  # warm-up: compiles MindSpore's prefill and decode graphs
        _timed_rounds(lm, ids, mask, new_tokens)
    for _ in range(repeats):
        for name, lm in models.items():
            prefill_s, decode_s, tokens[name] = _timed_rounds(lm, ids, mask, new_tokens)
            best[name] = [min(best[name][0], prefill_s), min(best[name][1], decode_s)]
    return {
        name: {
            "model": labels[name],
            "prefill_tok_s": batch * prompt_len / best[name][0],
            "decode_tok_s": batch * new_tokens / best[name][1],
            "tokens": tokens[name],
            "threads": threads,
        }
        for name in models
    }


def run_bench(which: str = "small", threads: int | None = None, batch: int = 1, prompt_len: int | None = None,
              new_tokens: int | None = None, repeats: int = 3, echo: Callable[[str], Any] = print) -> list[dict[str, Any]]:
    """MindSpore vs PyTorch backend rows for one or more ``zoo bench`` configs; prints a table and the ratio."""
    import torch

    from zoo_torch.bench import bench_cases, run_child

    threads = threads or torch.get_num_threads()
    results = []
    for name, config, p_len, n_new in bench_cases(which, prompt_len, new_tokens):
        common = ["--config", name, "--threads", str(threads), "--batch", str(batch), "--prompt-len", str(p_len),
                  "--new-tokens", str(n_new), "--repeats", str(repeats)]
        echo(f"== {name}: dim={config.dim} layers={config.n_layers} heads={config.n_heads}/{config.kv_heads} "
             f"vocab={config.vocab_size} fp32 threads={threads} batch={batch} prompt={p_len} new={n_new}")
        rows = run_child(common, "zoo_mindspore.bench")
        torch_row, ms_row = rows["torch"], rows["mindspore"]
        echo(f"  {'model':<50} {'prefill tok/s':>14} {'decode tok/s':>13}")
        for row in rows.values():
            echo(f"  {row['model']:<50} {row['prefill_tok_s']:>14,.1f} {row['decode_tok_s']:>13,.1f}")
        ratio = ms_row["decode_tok_s"] / torch_row["decode_tok_s"]
        same = all(row["tokens"] == torch_row["tokens"] for row in rows.values())
        echo(f"  ratio mindspore / torch: decode {ratio:.2f}x, prefill "
             f"{ms_row['prefill_tok_s'] / torch_row['prefill_tok_s']:.2f}x; greedy tokens "
             f"{'identical' if same else 'DIFFER'}")
        entry = {"config": name, "threads": threads, "batch": batch, "prompt_len": p_len, "new_tokens": n_new,
                 "rows": [torch_row, ms_row], "decode_ratio": ratio, "same_tokens": same}
        if "mindspore-ops" in rows:
            ops_ratio = rows["mindspore-ops"]["decode_tok_s"] / torch_row["decode_tok_s"]
            echo(f"  without the CPU decode kernels (MindSpore operators only): decode {ops_ratio:.2f}x")
            entry["rows"].append(rows["mindspore-ops"])
            entry["ops_only_decode_ratio"] = ops_ratio
        results.append(entry)
    return results


def _child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--prompt-len", type=int, required=True)
    parser.add_argument("--new-tokens", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    a = parser.parse_args(argv)
    print(json.dumps(child_both(a.config, a.batch, a.prompt_len, a.new_tokens, a.repeats, a.threads)))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child_main(sys.argv[2:])
    else:
        run_bench()
