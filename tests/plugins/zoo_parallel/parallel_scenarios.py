"""Functions the distributed tests run on every rank (module level, so spawn can import them).

Each scenario builds the same tiny model on every rank, so every rank can also
compute the single-process reference itself and report both.
"""

from __future__ import annotations

from typing import Any

import attrs

from codellama_zoo.specs import LlamaConfig

GLOBAL_BATCH = 4
SEQ_LEN = 16
STEPS = 3
LR = 1e-2
MAX_NORM = 1.0
EPS = 1e-6  # AdamW divides by sqrt(v)+eps: with a tiny eps, gradients near 1e-9 turn rounding noise into full steps


def tiny_config(n_layers: int = 2) -> LlamaConfig:
    """Code Llama 34B's shape (GQA with 8 query heads per kv head, theta 1e6) shrunk to a few KB."""
    from codellama_zoo.registry import get_registry

    base = get_registry().model("codellama-34b").config
    return attrs.evolve(base, dim=128, n_layers=n_layers, n_heads=16, n_kv_heads=2, vocab_size=256,
                        multiple_of=32, max_seq_len=64)


def build_model(config: LlamaConfig, seed: int = 0) -> Any:
    import torch

    from zoo_torch.model import Transformer

    model = Transformer(config)
    model.init_weights(generator=torch.Generator().manual_seed(seed))
    return model


def make_batch(config: LlamaConfig, batch: int = GLOBAL_BATCH, seq: int = SEQ_LEN, seed: int = 1) -> tuple[Any, Any]:
    """Tokens and next-token labels, with prompt-like masked spans of different lengths per row."""
    import torch

    g = torch.Generator().manual_seed(seed)
    data = torch.randint(0, config.vocab_size, (batch, seq + 1), generator=g)
    tokens, labels = data[:, :-1].clone(), data[:, 1:].clone()
    for row in range(batch):
        labels[row, : (3 * row + 2) % seq] = -100  # uneven target counts across data-parallel ranks
    return tokens, labels


def reference_training(config: LlamaConfig, tokens: Any, labels: Any, steps: int = STEPS) -> tuple[list[float], dict[str, Any]]:
    """One process, the whole batch: the numbers every layout must reproduce."""
    import torch
    import torch.nn.functional as F

    model = build_model(config)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, eps=EPS)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        logits = model(tokens)
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM)
        opt.step()
        losses.append(loss.item())
    return losses, {k: v.detach().clone() for k, v in model.state_dict().items()}


def train_and_compare(plan_fields: dict[str, Any], n_layers: int = 2) -> dict[str, Any]:
    """Train with ``ParallelPlan(**plan_fields)`` and with one process; report losses and weight gaps."""
    import torch

    from zoo_parallel.engine import parallelize
    from zoo_parallel.plan import ParallelPlan

    torch.manual_seed(0)
    config = tiny_config(n_layers)
    tokens, labels = make_batch(config)
    ref_losses, ref_weights = reference_training(config, tokens, labels)

    parallel = parallelize(build_model(config), ParallelPlan(**plan_fields), batch_size=GLOBAL_BATCH, seq_length=SEQ_LEN)
    opt = torch.optim.AdamW(parallel.parameters(), lr=LR, eps=EPS)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        losses.append(parallel.train_step(parallel.local_batch(tokens), parallel.local_batch(labels)))
        parallel.clip_grad_norm_(MAX_NORM)
        opt.step()
    weights = parallel.full_state_dict()
    gaps = {k: float((weights[k].float() - ref_weights[k].float()).abs().max()) for k in ref_weights if k in weights}
    return {
        "losses": losses,
        "ref_losses": ref_losses,
        "missing": sorted(set(ref_weights) - set(weights)),
        "unexpected": sorted(set(weights) - set(ref_weights)),
        "max_weight_gap": max(gaps.values()),
        "worst_tensor": max(gaps, key=gaps.__getitem__),
    }


def fail_on_rank(rank_to_fail: int, message: str) -> None:
    """A worker that raises on one rank while the others wait in a collective."""
    import torch
    import torch.distributed as dist

    if dist.get_rank() == rank_to_fail:
        raise ValueError(message)
    dist.all_reduce(torch.ones(1))  # the healthy ranks block here until they are stopped


def train_tensor_parallel_and_save(dst: str) -> dict[str, Any]:
    """Train 2 steps with model_parallel = world, save a sharded checkpoint, return the full weights."""
    import torch

    from zoo_parallel.checkpoint import load_sharded, save_sharded
    from zoo_parallel.engine import parallelize
    from zoo_parallel.plan import ParallelPlan

    config = tiny_config()
    tokens, labels = make_batch(config)
    world = torch.distributed.get_world_size()
    parallel = parallelize(build_model(config), ParallelPlan(mp=world, vocab_parallel=True))
    opt = torch.optim.AdamW(parallel.parameters(), lr=LR, eps=EPS)
    for _ in range(2):
        opt.zero_grad()
        parallel.train_step(tokens, labels)
        opt.step()
    save_sharded(parallel, dst, optimizer=opt)
    trained = parallel.full_state_dict()
    # a fresh layout (here: sequence parallel, replicated vocab) reads the same files back
    again = parallelize(build_model(config, seed=7), ParallelPlan(mp=world, seq_parallel=True))
    load_sharded(again, dst)
    reloaded = again.full_state_dict()
    gap = max(float((reloaded[k] - trained[k]).abs().max()) for k in trained)
    return {"weights": trained, "reload_gap": gap}


def tensor_parallel_generation(weights_dir: str, new_tokens: int = 8) -> dict[str, Any]:
    """Prefill logits and greedy tokens: one process vs the model sharded over every rank."""
    import numpy as np

    from zoo_parallel.inference import load_tensor_parallel
    from zoo_torch.runtime import load_model

    ids = np.array([[0, 0, 5, 17, 99, 3], [11, 12, 13, 14, 15, 16]])
    mask = (np.arange(6)[None, :] >= np.array([[2], [0]])).astype(np.int64)  # row 0 left-padded

    def run(lm: Any) -> tuple[Any, list[list[int]]]:
        lm.start(2, 6 + new_tokens)
        logits = lm.prefill(ids, mask)
        first = logits.copy()
        out = []
        for _ in range(new_tokens):
            nxt = logits.argmax(-1)
            out.append(nxt.tolist())
            logits = lm.decode(nxt)
        return first, out

    ref_logits, ref_tokens = run(load_model(None, weights_dir, "cpu", "fp32", "eager"))
    tp = load_tensor_parallel(load_model, None, weights_dir, "cpu", "fp32", "eager")
    tp_logits, tp_tokens = run(tp)
    local_heads = tp.model.layers[0].attention.n_heads
    return {"max_logit_gap": float(np.abs(ref_logits - tp_logits).max()), "ref_tokens": ref_tokens,
            "tp_tokens": tp_tokens, "local_heads": local_heads}


def report_plugins(out_dir: str) -> None:
    """Each rank writes what it sees: its rank, the plugins loaded and the strategies registered."""
    import json
    from pathlib import Path

    import torch.distributed as dist

    from codellama_zoo.plugins import get_plugin_manager
    from codellama_zoo.registry import get_registry

    rank = dist.get_rank()
    seen = {
        "rank": rank,
        "world": dist.get_world_size(),
        "backend": dist.get_backend(),
        "plugins": [info.name for info in get_plugin_manager().plugin_infos()],
        "strategies": get_registry().parallel_strategies.names(),
    }
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(seen))
    dist.barrier()
