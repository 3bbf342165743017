"""What the model card reports, measured on standard-library files the model never saw.

* held-out loss: mean next-token cross-entropy over the held-out files,
  BOS/EOS-delimited and packed into ``seq_length + 1`` windows (as pretraining);
* infill exact match: one body line of each held-out function is removed and
  the model fills it in from the surrounding code (PSM, greedy); compared with
  the same model given no surrounding code, and with always guessing the most
  frequent body line of the training functions;
* parse rate: greedy completions of held-out function headers (signature and
  docstring) that ``ast`` parses once cut at the end of the function.
"""

from __future__ import annotations

import ast
import collections
import hashlib
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from zoo_codelet.corpus import HELDOUT_PERCENT, SKIP_DIRS, stdlib_root
from zoo_codelet.presets import SEQ_LENGTH

PREFIX_TOKENS = 320  # infill context before the hole (closest lines kept)
SUFFIX_TOKENS = 120  # and after it
INFILL_NEW_TOKENS = 48
COMPLETION_NEW_TOKENS = 160
BATCH = 8


@attrs.frozen
class InfillTask:
    """One line of a held-out function to fill in."""

    ident: str
    prefix: str
    middle: str  # the removed line, without its newline
    suffix: str  # starts with the newline that ended the line


# -- held-out data -----------------------------------------------------------
def heldout_sources(root: Path | None = None) -> list[tuple[str, str]]:
    """``(relative path, text)`` of the held-out standard-library files, sorted."""
    from zoo_datasets.docstrings import heldout_file, python_files

    base = root or stdlib_root()
    out = []
    for file, relative in python_files(base, {d for d in SKIP_DIRS.split(",") if d}):
        if heldout_file(relative, HELDOUT_PERCENT) and not Path(relative).name.startswith("_sysconfigdata"):
            try:
                text = file.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            if text.strip():
                out.append((relative, text))
    return out


def sources_sha256(sources: Sequence[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for relative, text in sources:
        digest.update(relative.encode() + b"\0" + text.encode() + b"\0")
    return digest.hexdigest()


# -- held-out loss -----------------------------------------------------------
def loss_windows(tokenizer: Any, sources: Sequence[tuple[str, str]], seq_length: int = SEQ_LENGTH) -> list[list[int]]:
    """The held-out files as pretraining sees text: ``BOS text EOS`` packed into ``seq_length + 1`` windows."""
    stream: list[int] = []
    for _, text in sources:
        stream += [tokenizer.bos_id, *tokenizer.encode(text), tokenizer.eos_id]
    size = seq_length + 1
    return [stream[i : i + size] for i in range(0, len(stream) - size + 1, size)]


def heldout_loss(weights: Path, windows: Sequence[Sequence[int]], batch: int = BATCH) -> float:
    """Mean cross-entropy (nats per token) of the checkpoint in ``weights`` over ``windows``."""
    import torch
    import torch.nn.functional as F

    model = load_torch_model(weights)
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(windows), batch):
            ids = torch.tensor(windows[start : start + batch], dtype=torch.long)
            logits = model(ids[:, :-1])
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="sum"))
            count += int(ids[:, 1:].numel())
    return total / max(count, 1)


# -- infill ------------------------------------------------------------------
def _body_line(example: Any) -> int | None:
    """Index (in the function's code lines) of the line to remove: the middle one of its statement lines."""
    try:
        function = ast.parse(example.code).body[0]
    except (SyntaxError, IndexError):
        return None
    if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return None
    first_body = function.body[0].lineno - 1
    lines = example.code.splitlines()
    candidates = [
        i for i, line in enumerate(lines)
        if i >= first_body and len(line.strip()) >= 8 and not line.strip().startswith(("#", '"', "'", "@"))
    ]
    return candidates[len(candidates) // 2] if candidates else None


def infill_tasks(sources: Sequence[tuple[str, str]], limit: int | None = None) -> list[InfillTask]:
    """One task per documented held-out function (functions found by the ``docstrings`` dataset)."""
    from zoo_datasets.docstrings import extract_functions

    tasks = []
    for relative, text in sources:
        file_lines = text.splitlines(keepends=True)
        for example in extract_functions(text, relative):
            pick = _body_line(example)
            if pick is None:
                continue
            target = example.code.splitlines()[pick].strip()
            # Find that line in the file, after the def line (the code was dedented and lost its docstring).
            for number in range(example.lineno - 1, len(file_lines)):
                if file_lines[number].strip() == target:
                    break
            else:
                continue
            line = file_lines[number].rstrip("\n")
            tasks.append(
                InfillTask(
                    ident=f"{relative}::{example.qualname}",
                    prefix="".join(file_lines[:number]),
                    middle=line,
                    suffix="\n" + "".join(file_lines[number + 1 :]),
                )
            )
    if not limit or len(tasks) <= limit:
        return tasks
    stride = len(tasks) / limit  # spread over all held-out files, not the first few
    return [tasks[int(i * stride)] for i in range(limit)]


def _clip(tokenizer: Any, text: str, budget: int, keep_end: bool) -> str:
    """Whole lines of ``text`` nearest the hole that fit in ``budget`` tokens."""
    lines = text.splitlines(keepends=True)
    kept: list[str] = []
    used = 0
    for line in reversed(lines) if keep_end else lines:
        n = len(tokenizer.encode_nospace(line))
        if used + n > budget:
            break
        kept.append(line)
        used += n
    return "".join(reversed(kept) if keep_end else kept)


def exact(prediction: str, truth: str) -> bool:
    """The first generated line equals the removed line (trailing whitespace ignored)."""
    first = prediction.split("\n", 1)[0]
    return first.rstrip() == truth.rstrip()


def infill_exact_match(model: Any, tasks: Sequence[InfillTask], with_context: bool = True) -> float:
    """Share of tasks whose removed line the model restores exactly (greedy PSM)."""
    if not tasks:
        return float("nan")
    tok = model.tokenizer
    prompts, stop_ids = [], []
    for task in tasks:
        if with_context:
            prefix = _clip(tok, task.prefix, PREFIX_TOKENS, keep_end=True)
            suffix = _clip(tok, task.suffix, SUFFIX_TOKENS, keep_end=False)
        else:
            prefix, suffix = "", "\n"
        ids, stop_ids = model.encode_infill(prefix, suffix)
        prompts.append(ids)
    decoder = model.decoder(model.settings(max_new_tokens=INFILL_NEW_TOKENS, temperature=0.0, stop=("\n",)))
    hits = 0
    for start in range(0, len(prompts), BATCH):
        results = decoder.generate(model.lm, tok, prompts[start : start + BATCH], stop_ids=stop_ids)
        hits += sum(exact(r.text, t.middle) for r, t in zip(results, tasks[start : start + BATCH], strict=True))
    return hits / len(tasks)


def load_torch_model(weights: Path) -> Any:
    """The checkpoint in ``weights`` as an fp32 :class:`zoo_torch.model.Transformer` (for teacher-forced scoring)."""
    import torch

    from zoo_torch.checkpoints import load_state_dict, read_config
    from zoo_torch.model import Transformer

    config = read_config(weights)
    state, _ = load_state_dict(weights, config)
    model = Transformer(config, device="cpu", dtype=torch.float32)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    return model.eval()


def infill_token_accuracy(network: Any, model: Any, tasks: Sequence[InfillTask], with_context: bool = True) -> float:
    """Teacher-forced share of the removed line's tokens (and ``<EOT>``) that are the model's top choice."""
    import torch

    tok = model.tokenizer
    hits, total = 0, 0
    with torch.no_grad():
        for task in tasks:
            prefix = _clip(tok, task.prefix, PREFIX_TOKENS, keep_end=True) if with_context else ""
            suffix = _clip(tok, task.suffix, SUFFIX_TOKENS, keep_end=False) if with_context else "\n"
            prompt, _ = model.encode_infill(prefix, suffix)
            target = [*tok.encode_nospace(task.middle), tok.require("eot")]
            ids = torch.tensor([prompt + target[:-1]], dtype=torch.long)
            predicted = network(ids)[0, len(prompt) - 1 :].argmax(-1).tolist()
            hits += sum(int(p == t) for p, t in zip(predicted, target, strict=True))
            total += len(target)
    return hits / max(total, 1)


def most_common_line_baseline(tasks: Sequence[InfillTask], train_root: Path | None = None) -> float:
    """Exact match of always answering the most frequent body line of the training functions."""
    from zoo_datasets.docstrings import iter_examples

    counts: collections.Counter[str] = collections.Counter()
    for example in iter_examples(train_root or stdlib_root(), "train", HELDOUT_PERCENT, SKIP_DIRS):
        pick = _body_line(example)
        if pick is not None:
            counts[example.code.splitlines()[pick].strip()] += 1
    guess = counts.most_common(1)[0][0] if counts else ""
    if not tasks:
        return float("nan")
    return sum(t.middle.strip() == guess for t in tasks) / len(tasks)


# -- completions that parse --------------------------------------------------
def heldout_headers(sources: Sequence[tuple[str, str]], limit: int = 40) -> list[Any]:
    """A fixed set of held-out documented functions (one-line signature, short docstring), spread over the files."""
    from zoo_datasets.docstrings import extract_functions

    found = [
        example
        for relative, text in sources
        for example in extract_functions(text, relative)
        if "\n" not in example.signature and len(example.docstring) <= 400
    ]
    if len(found) <= limit:
        return found
    stride = len(found) / limit
    return [found[int(i * stride)] for i in range(limit)]


def header_prompt(example: Any) -> str:
    """The function's header as code: signature and docstring, body to be written."""
    doc = textwrap.indent(example.docstring.replace('"""', "'''"), "    ").lstrip()
    return f'{example.signature}\n    """{doc}\n    """\n'


def cut_function(prompt: str, completion: str, finished: bool) -> str:
    """``prompt + completion`` up to the end of the function (a line back at column 0).

    The first line of the text is the ``def`` line whatever it is (a chat answer
    starts with it).
    """
    lines = (prompt + completion).splitlines(keepends=True)
    header = max(1, len(prompt.splitlines()))
    out = lines[:header]
    ended = False
    for line in lines[header:]:
        if line.strip() and not line[:1].isspace():
            ended = True
            break
        out.append(line)
    if not ended and not finished and out[header:]:
        out = out[:-1]  # generation stopped mid-line at the token limit
    return "".join(out)


def parses(source: str) -> bool:
    """``ast`` parses it into a function with at least one statement besides a docstring."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    if not tree.body or not isinstance(tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef)):
        return False
    body = tree.body[0].body
    if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
        body = body[1:]
    return bool(body)


def parse_rate(model: Any, examples: Sequence[Any], chat: bool = False) -> tuple[float, list[str]]:
    """Share of greedy answers that parse, and the cut sources.

    Completion (base): the model continues the header code. Chat (instruct):
    the model answers the instruction the ``docstrings`` dataset would ask.
    """
    if not examples:
        return float("nan"), []
    decoder = model.decoder(model.settings(max_new_tokens=COMPLETION_NEW_TOKENS, temperature=0.0))
    sources, ok = [], 0
    for start in range(0, len(examples), BATCH):
        batch = list(examples[start : start + BATCH])
        if chat:
            encoded = [model.encode_chat([{"role": "user", "content": e.instruction()}]) for e in batch]
            stop_ids = encoded[0][1]
            results = decoder.generate(model.lm, model.tokenizer, [ids for ids, _ in encoded], stop_ids=stop_ids,
                                       strip_leading_space=True)
            prompts = [""] * len(batch)
        else:
            prompts = [header_prompt(e) for e in batch]
            results = decoder.generate(model.lm, model.tokenizer, [model.encode_completion(p) for p in prompts])
        for prompt, result in zip(prompts, results, strict=True):
            source = cut_function(prompt, result.text, result.finish_reason == "stop")
            sources.append(source)
            ok += parses(source)
    return ok / len(examples), sources


# -- everything --------------------------------------------------------------
QUICK_WINDOWS = 16  # the tests' held-out-loss subset


def evaluate_model(name: str, *, weights: Path | None = None, limit: int | None = None) -> dict[str, Any]:
    """All card metrics for one model; ``limit`` caps the infill tasks (spread evenly; all by default)."""
    from codellama_zoo.api import load
    from codellama_zoo.loading import locate_weights
    from codellama_zoo.registry import get_registry

    spec = get_registry().model(name)
    path = Path(weights) if weights is not None else locate_weights(spec, None)
    model = load(spec.name, weights=path, device="cpu", dtype="fp32")
    sources = heldout_sources()
    windows = loss_windows(model.tokenizer, sources)
    tasks = infill_tasks(sources, limit)
    headers = heldout_headers(sources)
    chat = spec.supports("chat")
    rate, _ = parse_rate(model, headers, chat=chat)
    network = load_torch_model(path)
    return {
        "model": spec.name,
        "heldout_files": len(sources),
        "heldout_sha256": sources_sha256(sources),
        "heldout_tokens": len(windows) * (SEQ_LENGTH + 1),
        "heldout_loss": round(heldout_loss(path, windows), 4),
        "heldout_loss_quick": round(heldout_loss(path, windows[:QUICK_WINDOWS]), 4),
        "quick_windows": QUICK_WINDOWS,
        "infill_tasks": len(tasks),
        "infill_exact_match": round(infill_exact_match(model, tasks, with_context=True), 4),
        "infill_exact_match_no_context": round(infill_exact_match(model, tasks, with_context=False), 4),
        "infill_exact_match_most_common_line": round(most_common_line_baseline(tasks), 4),
        "infill_token_accuracy": round(infill_token_accuracy(network, model, tasks, with_context=True), 4),
        "infill_token_accuracy_no_context": round(infill_token_accuracy(network, model, tasks, with_context=False), 4),
        "completion_prompts": len(headers),
        "completion_mode": "chat" if chat else "completion",
        "completion_parse_rate": round(rate, 4),
    }
