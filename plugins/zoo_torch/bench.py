"""``zoo bench``: our torch model vs ``transformers.LlamaForCausalLM``, same weights/dtype/threads.

Each measurement runs in a child process (``python -m zoo_torch.bench --child ...``)
so that each model's peak RSS (VmHWM) is its own. Both children build the same
random weights from the same seed (our model's :meth:`init_weights`; the
transformers model gets those tensors under its names). Timings are the best of
``repeats`` within a child, and of ``rounds`` children per model run alternately
(the machine may be shared; the best run is the least disturbed one):

* prefill: one forward over a ``(batch, prompt_len)`` prompt, logits of the last
  position only (transformers: ``logits_to_keep=1``, as ``generate`` does);
* decode: ``new_tokens`` greedy steps after the prefill. Ours goes through the
  :class:`~codellama_zoo.runtime.LanguageModel` API (``decode`` with numpy logits
  and argmax, what ``zoo run``'s generators use). transformers: ``generate()``
  (greedy, default dynamic cache) for ``new_tokens + 1`` tokens, timed from the
  first to the last call of a logits processor, i.e. the ``new_tokens`` decode
  steps alone, without the prefill.
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

import attrs

from codellama_zoo.specs import LlamaConfig

SEED = 1234


def bench_configs() -> dict[str, tuple[LlamaConfig, int, int]]:
    """name -> (config, prompt_len, new_tokens)."""
    from zoo_codellama.presets import ARCHITECTURES

    base = ARCHITECTURES["7b"]
    return {
        # smoke-test size: per-token overhead is everything
        "micro": (attrs.evolve(base, dim=64, n_layers=2, n_heads=4, vocab_size=512, multiple_of=32), 8, 8),
        # small: the shape of the project's default model (zoo-codelet-5m: Code Llama's architecture with
        # GQA 4:1, theta 1e6, 4k vocab); per-token overhead dominates its decode
        "small": (attrs.evolve(base, dim=256, n_layers=4, n_heads=8, n_kv_heads=2, vocab_size=4096, multiple_of=64,
                               max_seq_len=512), 64, 64),
        # full-width 7B (dim 4096, 32 heads, ffn 11008, vocab 32016) with 2 layers: weight-bandwidth-bound
        "7b-2l": (attrs.evolve(base, n_layers=2), 64, 32),
    }


def bench_cases(which: str, prompt_len: int | None, new_tokens: int | None) -> list[tuple[str, LlamaConfig, int, int]]:
    """(name, config, prompt length, new tokens) for ``which`` (a name or "all"), explicit lengths overriding."""
    configs = bench_configs()
    names = ["small", "7b-2l"] if which == "all" else [which]
    return [(name, configs[name][0], prompt_len or configs[name][1], new_tokens or configs[name][2]) for name in names]


def _peak_rss() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _prompt(config: LlamaConfig, batch: int, prompt_len: int) -> Any:
    import torch

    g = torch.Generator().manual_seed(SEED + 1)
    return torch.randint(3, config.vocab_size, (batch, prompt_len), generator=g)


def _best(fn: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def child_ours(config: LlamaConfig, dtype: str, batch: int, prompt_len: int, new_tokens: int, repeats: int,
               attention: str, use_compile: bool) -> dict[str, Any]:
    import numpy as np
    import torch

    from zoo_torch.runtime import load_model

    lm = load_model(config, None, device="cpu", dtype=dtype, attention=attention, seed=SEED, compile=use_compile)
    ids = _prompt(config, batch, prompt_len).numpy()
    mask = np.ones_like(ids)

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

    prefill()  # warm-up (and compile)
    timings: list[float] = []
    decode_loop()
    t_prefill = _best(prefill, repeats)
    timings.clear()
    tokens = []
    for _ in range(repeats):
        tokens = decode_loop()
    t_decode = min(timings)
    return {
        "model": f"zoo_torch ({lm.attention}{', compiled' if use_compile else ''})",
        "prefill_tok_s": batch * prompt_len / t_prefill,
        "decode_tok_s": batch * new_tokens / t_decode,
        "peak_rss_bytes": _peak_rss(),
        "weights_bytes": lm.load_stats["weights_bytes"],
        "tokens": tokens,
        "threads": torch.get_num_threads(),
    }


def child_transformers(config: LlamaConfig, dtype: str, batch: int, prompt_len: int, new_tokens: int,
                       repeats: int) -> dict[str, Any]:
    import torch
    import transformers

    from zoo_torch.checkpoints import config_to_hf, ours_to_hf, torch_dtype
    from zoo_torch.model import Transformer

    tdtype = torch_dtype(dtype)
    ours = Transformer(config, dtype=tdtype)
    ours.init_weights(generator=torch.Generator().manual_seed(SEED))
    sd = {ours_to_hf(k): v for k, v in ours.state_dict().items()}
    del ours
    fields = {k: v for k, v in config_to_hf(config, dtype).items() if k not in ("architectures", "torch_dtype")}
    hf_config = transformers.LlamaConfig(**fields)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(hf_config)
    model.load_state_dict(sd, assign=True, strict=False)
    del sd
    model.model.rotary_emb.inv_freq = model.model.rotary_emb.compute_default_rope_parameters(hf_config)[0]
    model.model.rotary_emb.original_inv_freq = model.model.rotary_emb.inv_freq.clone()
    model = model.to(tdtype).eval()
    ids = _prompt(config, batch, prompt_len)
    mask = torch.ones_like(ids)
    gen_kwargs = {"do_sample": False, "pad_token_id": 0, "eos_token_id": None, "attention_mask": mask}

    class Stamp(transformers.LogitsProcessor):
        """Called once per generated token, right after each forward: timestamps the decode steps."""

        def __init__(self) -> None:
            self.times: list[float] = []

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            self.times.append(time.perf_counter())
            return scores

    @torch.inference_mode()
    def prefill() -> Any:
        return model(input_ids=ids, attention_mask=mask, use_cache=True, logits_to_keep=1).logits

    @torch.inference_mode()
    def generate(n: int) -> tuple[Any, float]:
        stamp = Stamp()
        out = model.generate(ids, max_new_tokens=n + 1, min_new_tokens=n + 1,
                             logits_processor=transformers.LogitsProcessorList([stamp]), **gen_kwargs)
        return out, stamp.times[-1] - stamp.times[0]  # the n decode steps after the prefill

    prefill()
    generate(2)  # warm-up
    t_prefill = _best(prefill, repeats)
    t_decode = float("inf")
    out = None
    for _ in range(repeats):
        out, t = generate(new_tokens)
        t_decode = min(t_decode, t)
    assert out is not None
    return {
        "model": f"transformers {transformers.__version__} ({model.config._attn_implementation})",
        "prefill_tok_s": batch * prompt_len / t_prefill,
        "decode_tok_s": batch * new_tokens / t_decode,
        "peak_rss_bytes": _peak_rss(),
        "tokens": out[0, prompt_len:prompt_len + new_tokens].tolist(),
        "threads": torch.get_num_threads(),
    }


def run_child(args: list[str], module: str = "zoo_torch.bench") -> dict[str, Any]:
    """Run ``python -m module --child ARGS`` (a fresh process per measurement) and return its last JSON line."""
    cmd = [sys.executable, "-m", module, "--child", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"benchmark child {module} {' '.join(args[:2])} failed: " + " | ".join(tail))
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _fmt_mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def run_bench(which: str = "all", dtype: str = "fp32", threads: int | None = None, batch: int = 1,
              prompt_len: int | None = None, new_tokens: int | None = None, repeats: int = 3,
              attention: str = "auto", use_compile: bool = False, with_transformers: bool = True,
              echo: Callable[[str], Any] = print, rounds: int = 2) -> list[dict[str, Any]]:
    """Run the benchmark for one or all configs; print a table per config; return the rows."""
    import torch

    threads = threads or torch.get_num_threads()
    results = []
    for name, config, p_len, n_new in bench_cases(which, prompt_len, new_tokens):
        common = ["--config", name, "--dtype", dtype, "--threads", str(threads), "--batch", str(batch),
                  "--prompt-len", str(p_len), "--new-tokens", str(n_new), "--repeats", str(repeats)]
        echo(f"== {name}: dim={config.dim} layers={config.n_layers} heads={config.n_heads}/{config.kv_heads} "
             f"ffn={config.ffn_hidden} vocab={config.vocab_size} params={config.param_count() / 1e6:.1f}M "
             f"{dtype} threads={threads} batch={batch} prompt={p_len} new={n_new}")
        variants = [["ours", *common, "--attention", attention]]
        if use_compile:
            variants.append(["ours", *common, "--attention", attention, "--compile"])
        if with_transformers:
            variants.append(["transformers", *common])
        # Rounds alternate the models, so that load from other processes hits both alike; each keeps its best.
        rows: list[dict[str, Any]] = []
        for _ in range(max(1, rounds)):
            for i, args in enumerate(variants):
                r = run_child(args)
                if len(rows) <= i:
                    rows.append(r)
                    continue
                for key in ("prefill_tok_s", "decode_tok_s"):
                    rows[i][key] = max(rows[i][key], r[key])
                rows[i]["peak_rss_bytes"] = max(rows[i]["peak_rss_bytes"], r["peak_rss_bytes"])
        echo(f"  {'model':<44} {'prefill tok/s':>14} {'decode tok/s':>13} {'peak RSS':>11}")
        for r in rows:
            echo(f"  {r['model']:<44} {r['prefill_tok_s']:>14,.1f} {r['decode_tok_s']:>13,.1f} "
                 f"{_fmt_mb(r['peak_rss_bytes']):>11}")
        entry: dict[str, Any] = {"config": name, "dtype": dtype, "threads": threads, "batch": batch,
                                 "prompt_len": p_len, "new_tokens": n_new, "rounds": rounds, "repeats": repeats,
                                 "load_average": os.getloadavg()[0], "rows": rows}
        if with_transformers:
            ref = rows[-1]
            for r in rows[:-1]:
                ratio = {k: r[k] / ref[k] for k in ("prefill_tok_s", "decode_tok_s", "peak_rss_bytes")}
                same = r["tokens"] == ref["tokens"]
                echo(f"  ratio {r['model']} / transformers: prefill {ratio['prefill_tok_s']:.2f}x, "
                     f"decode {ratio['decode_tok_s']:.2f}x, peak RSS {ratio['peak_rss_bytes']:.2f}x; "
                     f"greedy tokens {'identical' if same else 'DIFFER'}")
                r["ratio_vs_transformers"] = ratio
                r["same_tokens"] = same
        results.append(entry)
    return results


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child_load(weights_dir: str, dtype: str) -> dict[str, Any]:
    """Peak RSS while loading a checkpoint (and after one forward touches every weight), vs its size."""
    import numpy as np
    import torch

    from zoo_torch.attention import resolve_attention
    from zoo_torch.checkpoints import read_config
    from zoo_torch.model import Transformer
    from zoo_torch.runtime import load_model

    # Before the baseline: torch's kernels, every plugin, the registry, the checkpoint's config.
    torch.zeros(1) @ torch.zeros(1)
    resolve_attention("eager", "cpu")
    config = read_config(weights_dir)
    with torch.device("meta"):  # the first meta-device build imports ~70 MB of torch modules
        Transformer(attrs.evolve(config, n_layers=1))
    base = _rss_now()
    base_peak = _peak_rss()
    lm = load_model(None, weights_dir, device="cpu", dtype=dtype, attention="eager")
    after_load = _peak_rss()
    lm.start(1, 2)
    lm.prefill(np.array([[1, 2]]), np.ones((1, 2), dtype=np.int64))
    after_forward = _peak_rss()
    weights = lm.load_stats["weights_bytes"]
    return {
        "weights_bytes": weights,
        "baseline_rss": base,
        "baseline_peak": base_peak,
        "load_peak_delta": after_load - base,
        "forward_peak_delta": after_forward - base,
        "load_ratio": (after_load - base) / weights,
        "forward_ratio": (after_forward - base) / weights,
        "seconds": lm.load_stats["seconds"],
    }


def measure_load(weights_dir: str, dtype: str = "fp32") -> dict[str, Any]:
    """Run :func:`child_load` in a fresh process (so the peak is the load's own)."""
    return run_child(["load", "--weights", weights_dir, "--dtype", dtype])


def _child_main(argv: list[str]) -> None:
    if argv and argv[0] == "load":
        p = argparse.ArgumentParser()
        p.add_argument("--weights", required=True)
        p.add_argument("--dtype", default="fp32")
        la = p.parse_args(argv[1:])
        print(json.dumps(child_load(la.weights, la.dtype)))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("which", choices=["ours", "transformers"])
    parser.add_argument("--config", required=True)
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--prompt-len", type=int, required=True)
    parser.add_argument("--new-tokens", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--attention", default="auto")
    parser.add_argument("--compile", action="store_true")
    a = parser.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    config = bench_configs()[a.config][0]
    if a.which == "ours":
        res = child_ours(config, a.dtype, a.batch, a.prompt_len, a.new_tokens, a.repeats, a.attention, a.compile)
    else:
        res = child_transformers(config, a.dtype, a.batch, a.prompt_len, a.new_tokens, a.repeats)
    print(json.dumps(res))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child_main(sys.argv[2:])
    else:
        run_bench()
