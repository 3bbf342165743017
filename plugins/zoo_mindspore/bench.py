"""``zoo mindspore bench``: the MindSpore backend's compiled decode vs the PyTorch backend's, same weights.

Uses ``zoo bench``'s configurations (``zoo_torch.bench.bench_configs``) and
its PyTorch child for the reference row, and adds a MindSpore child: the same
random weights (the torch model's seeded ``init_weights``, copied by name),
the same prompt, greedy decoding through the
:class:`~codellama_zoo.runtime.LanguageModel` API (numpy logits + argmax, what
``zoo run`` does). The MindSpore steps are compiled with ``mindspore.jit``;
the first prefill and decode (compilation) are warm-up and not timed. Each
model runs in its own child process. Reports tokens/s and the
MindSpore/PyTorch ratio, and whether the greedy tokens agree.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

SEED = 1234


def child_mindspore(config_name: str, batch: int, prompt_len: int, new_tokens: int, repeats: int,
                    threads: int) -> dict[str, Any]:
    os.environ.setdefault("GLOG_v", "3")
    import numpy as np
    import torch

    from zoo_mindspore import weights
    from zoo_mindspore.backend import load_model, set_cpu_threads
    from zoo_torch.bench import _peak_rss, _prompt, bench_configs
    from zoo_torch.model import Transformer

    torch.set_num_threads(threads)
    set_cpu_threads(threads)  # the same number of kernel threads as torch
    config = bench_configs()[config_name][0]
    reference = Transformer(config, dtype=torch.float32)
    reference.init_weights(generator=torch.Generator().manual_seed(SEED))
    state = {name: value.detach().numpy() for name, value in reference.state_dict().items() if not name.endswith("inv_freq")}
    del reference
    lm = load_model(config, None, device="cpu", dtype="fp32", attention="auto")
    weights.load_into(lm.model, state, source="benchmark weights")
    del state
    ids = _prompt(config, batch, prompt_len).numpy()
    mask = np.ones_like(ids)
    timings: list[float] = []

    def prefill() -> Any:
        lm.start(batch, prompt_len + new_tokens)
        return lm.prefill(ids, mask)

    def decode_loop() -> list[int]:
        logits = prefill()
        tokens = []
        t0 = time.perf_counter()
        for _ in range(new_tokens):
            nxt = logits.argmax(-1)
            tokens.append(int(nxt[0]))
            logits = lm.decode(nxt)
        timings.append(time.perf_counter() - t0)
        return tokens

    decode_loop()  # warm-up: compiles the prefill and decode graphs
    best_prefill = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        prefill()
        best_prefill = min(best_prefill, time.perf_counter() - t0)
    timings.clear()
    tokens: list[int] = []
    for _ in range(repeats):
        tokens = decode_loop()
    return {
        "model": f"zoo_mindspore (jit, {lm.attention})",
        "prefill_tok_s": batch * prompt_len / best_prefill,
        "decode_tok_s": batch * new_tokens / min(timings),
        "peak_rss_bytes": _peak_rss(),
        "tokens": tokens,
        "threads": threads,
    }


def _run(args: list[str], module: str) -> dict[str, Any]:
    env = dict(os.environ)
    env.setdefault("GLOG_v", "3")
    proc = subprocess.run([sys.executable, "-m", module, "--child", *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"benchmark child {module} {' '.join(args[:2])} failed: " + " | ".join(tail))
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def run_bench(which: str = "small", threads: int | None = None, batch: int = 1, prompt_len: int | None = None,
              new_tokens: int | None = None, repeats: int = 3, echo: Callable[[str], Any] = print) -> list[dict[str, Any]]:
    """MindSpore vs PyTorch backend rows for one or more ``zoo bench`` configs; prints a table and the ratio."""
    import torch

    from zoo_torch.bench import bench_configs

    configs = bench_configs()
    names = ["small", "7b-2l"] if which == "all" else [which]
    threads = threads or torch.get_num_threads()
    results = []
    for name in names:
        config, default_prompt, default_new = configs[name]
        p_len, n_new = prompt_len or default_prompt, new_tokens or default_new
        common = ["--config", name, "--threads", str(threads), "--batch", str(batch), "--prompt-len", str(p_len),
                  "--new-tokens", str(n_new), "--repeats", str(repeats)]
        echo(f"== {name}: dim={config.dim} layers={config.n_layers} heads={config.n_heads}/{config.kv_heads} "
             f"vocab={config.vocab_size} fp32 threads={threads} batch={batch} prompt={p_len} new={n_new}")
        torch_row = _run(["ours", *common, "--dtype", "fp32", "--attention", "auto"], "zoo_torch.bench")
        ms_row = _run(common, "zoo_mindspore.bench")
        echo(f"  {'model':<44} {'prefill tok/s':>14} {'decode tok/s':>13}")
        for row in (torch_row, ms_row):
            echo(f"  {row['model']:<44} {row['prefill_tok_s']:>14,.1f} {row['decode_tok_s']:>13,.1f}")
        ratio = ms_row["decode_tok_s"] / torch_row["decode_tok_s"]
        same = ms_row["tokens"] == torch_row["tokens"]
        echo(f"  ratio mindspore / torch: decode {ratio:.2f}x, prefill "
             f"{ms_row['prefill_tok_s'] / torch_row['prefill_tok_s']:.2f}x; greedy tokens "
             f"{'identical' if same else 'DIFFER'}")
        results.append({"config": name, "threads": threads, "batch": batch, "prompt_len": p_len, "new_tokens": n_new,
                        "rows": [torch_row, ms_row], "decode_ratio": ratio, "same_tokens": same})
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
    print(json.dumps(child_mindspore(a.config, a.batch, a.prompt_len, a.new_tokens, a.repeats, a.threads)))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child_main(sys.argv[2:])
    else:
        run_bench()
