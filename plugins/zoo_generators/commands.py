"""``zoo run`` (completion, chat, infill, streamed) and ``zoo download``."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

# Run when no model and no --weights are given: the embedded model, shipped as package data (zoo_codelet).
DEFAULT_MODEL = "zoo-codelet-5m-instruct"


def _echo_stream(pieces: Iterator[str], before: str = "", after: str = "") -> str:
    """Print text pieces as they arrive (between ``before`` and ``after``); return the generated text."""
    if before:
        click.echo(before, nl=False)
    out = []
    for piece in pieces:
        out.append(piece)
        click.echo(piece, nl=False)
        sys.stdout.flush()
    click.echo(after, nl=not after.endswith("\n"))
    return "".join(out)


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def _unescape(text: str) -> str:
    """``\\n``, ``\\t``, ``\\r`` and ``\\\\`` typed on a command line, as the characters."""
    return re.sub(r"\\([ntr\\])", lambda m: _ESCAPES[m.group(1)], text)


def _read_prompt(prompt: str | None, file: Path | None) -> str | None:
    from codellama_zoo.errors import UsageError

    if file is not None:
        if prompt is not None:
            raise UsageError("give the prompt either as an argument or with --file, not both")
        try:
            return file.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read prompt file {str(file)!r}: {exc.strerror}") from None
    if prompt == "-":
        return sys.stdin.read()
    return prompt


def _chat_loop(model: Any, system: str | None, options: dict[str, Any]) -> None:
    """Read user turns from stdin until EOF, /exit or Ctrl-C; keep the history."""
    interactive = sys.stdin.isatty()
    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    if interactive:
        click.echo(f"Chatting with {model.name}. Ctrl-D or /exit to quit, /reset to forget the conversation.", err=True)
    while True:
        try:
            line = _read_turn(interactive)
        except (EOFError, KeyboardInterrupt):
            if interactive:
                click.echo("", err=True)
            return
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit", "/bye"):
            return
        if text == "/reset":
            history = history[:1] if system else []
            continue
        history.append({"role": "user", "content": text})
        try:
            reply = _echo_stream(model.chat(history, stream=True, **options))
        except KeyboardInterrupt:  # Ctrl-C stops this reply; the turn is forgotten
            click.echo("")
            history.pop()
            if not interactive:
                return
            continue
        history.append({"role": "assistant", "content": reply})


def _read_turn(interactive: bool) -> str:
    """One user message; a line ending in a backslash continues on the next."""
    lines: list[str] = []
    prompt = ">>> "
    while True:
        if interactive:
            line = input(prompt)
        else:
            raw = sys.stdin.readline()
            if not raw:
                if lines:
                    break
                raise EOFError
            line = raw.rstrip("\n")
        if line.endswith("\\"):
            lines.append(line[:-1])
            prompt = "... "
            continue
        lines.append(line)
        break
    return "\n".join(lines)


@click.command("run")
@click.argument("model", required=False)
@click.argument("prompt", required=False)
@click.option("--weights", type=click.Path(path_type=Path), help="Checkpoint folder (default: $ZOO_HOME/<model>).")
@click.option("--file", "prompt_file", type=click.Path(path_type=Path, dir_okay=False), help="Read the prompt from a file.")
@click.option("--infill", is_flag=True, help="Fill in the middle: --prefix/--suffix, or a prompt containing <FILL_ME>.")
@click.option("--prefix", help="Code before the hole (with --infill).")
@click.option("--suffix", help="Code after the hole (with --infill).")
@click.option("--spm", is_flag=True, help="Infill in suffix-prefix-middle order instead of prefix-suffix-middle.")
@click.option("--chat/--no-chat", default=None, help="Force an interactive chat, or plain completion for an Instruct model.")
@click.option("--system", help="System prompt for chat.")
@click.option("--temperature", type=float, default=0.0, show_default=True, help="0 = greedy.")
@click.option("--top-p", type=float, default=1.0, show_default=True)
@click.option("--top-k", type=int, default=0, show_default=True, help="0 = off.")
@click.option("--min-p", type=float, default=0.0, show_default=True)
@click.option("--repetition-penalty", type=float, default=1.0, show_default=True)
@click.option("--max-new-tokens", type=int, default=256, show_default=True)
@click.option("--seed", type=int, help="Make sampling reproducible.")
@click.option("--stop", multiple=True, help="Stop at this text (repeatable).")
@click.option("--backend", default="auto", show_default=True, help="torch, mindspore, ... (auto: best available).")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1, npu, ... (auto).")
@click.option("--dtype", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True)
@click.option("--attention", default="auto", show_default=True, help="Attention kernel: eager, sdpa, flash, ... (auto).")
@click.option("--echo", is_flag=True, help="Print the prompt (for infill: prefix and suffix) around the generated text.")
@click.option("--escape/--no-escape", default=True, show_default=True,
              help="Turn \\n, \\t and \\\\ in PROMPT, --prefix, --suffix and --system into newline, tab, backslash.")
@click.option("--quiet", "-q", is_flag=True, help="No loading messages.")
def run_command(
    model: str | None,
    prompt: str | None,
    weights: Path | None,
    prompt_file: Path | None,
    infill: bool,
    prefix: str | None,
    suffix: str | None,
    spm: bool,
    chat: bool | None,
    system: str | None,
    echo: bool,
    escape: bool,
    quiet: bool,
    backend: str,
    device: str,
    dtype: str,
    attention: str,
    **knobs: Any,
) -> None:
    """Run MODEL: complete PROMPT, chat (Instruct models), or fill in the middle.

    \b
    zoo run codellama-7b "def fibonacci(n):"
    zoo run codellama-7b-instruct --system "Answer in Python"
    zoo run codellama-7b --infill "def f(x):\\n    <FILL_ME>\\n    return y"
    echo "def quicksort(a):" | zoo run codellama-7b -
    zoo run --weights ./my-llama "Once upon a time"
    """
    from codellama_zoo.config import GenerateConfig, structure
    from codellama_zoo.errors import UsageError
    from codellama_zoo.inference import Model
    from codellama_zoo.loading import load_language_model, place, plan, require_capability
    from codellama_zoo.registry import get_registry
    from zoo_generators.sampling import check_config

    if model is not None and prompt is None and weights is not None and model.lower() not in _model_names():
        model, prompt = None, model  # `zoo run --weights DIR "prompt"`
    if model is not None and prompt is None and weights is None and _looks_like_prompt(model):
        model, prompt = None, model  # `zoo run "def f(x):"`: a prompt for the default model
    if model is None and weights is None:
        model = DEFAULT_MODEL
    if escape:  # as llama.cpp does: code on a command line needs newlines
        if prompt is not None and prompt != "-":
            prompt = _unescape(prompt)
        prefix, suffix, system = (None if t is None else _unescape(t) for t in (prefix, suffix, system))
    if prefix is not None or suffix is not None:
        infill = True
    if model is not None and (infill or chat):  # refuse before looking for any weights
        spec = get_registry().model(model)
        require_capability(spec.name, spec.capabilities, "infill" if infill else "chat")
    options = {k: (tuple(v) if k == "stop" else v) for k, v in knobs.items()}
    check_config(structure(options, GenerateConfig, source="options"))  # a bad --top-p fails now, not after loading
    text = _read_prompt(prompt, prompt_file)  # None: chat reads stdin turn by turn, completion reads it whole
    if infill and prefix is None and suffix is None:
        if text is None and not sys.stdin.isatty():
            text = sys.stdin.read()
        if text is None:
            raise UsageError("--infill needs --prefix/--suffix or a prompt containing <FILL_ME>")
        from zoo_infill.prompts import split_fill_marker

        prefix, suffix = split_fill_marker(text)

    p = plan(model, weights)
    chatting = (chat if chat is not None else (p.spec is not None and p.spec.supports("chat"))) and not infill
    if infill:
        require_capability(p.name, p.capabilities, "infill")
    elif chatting:
        require_capability(p.name, p.capabilities, "chat")
    elif text is None:
        if sys.stdin.isatty():
            raise UsageError(f"give {p.name} a prompt to complete: an argument, --file, or '-' to read stdin")
        text = sys.stdin.read()

    where = place(backend, device, dtype, attention)
    if not quiet and sys.stderr.isatty():
        click.echo(f"loading {p.name} from {p.weights_dir} ({where.backend.name}, {where.device}, {where.dtype})", err=True)
    lm = load_language_model(p, where)
    loaded = Model(
        lm, p.tokenizer, name=p.name, capabilities=p.capabilities, chat_format=p.chat_format,
        infill_formats=p.infill_formats,
    )  # fmt: skip
    if infill:
        middle = loaded.infill(prefix or "", suffix or "", suffix_first=spm, stream=True, **options)
        _echo_stream(middle, *((prefix or "", suffix or "") if echo else ("", "")))
    elif chatting:
        if text is not None:  # one question, one answer
            messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
            _echo_stream(loaded.chat(messages, stream=True, **options))
        else:
            _chat_loop(loaded, system, options)
    else:
        _echo_stream(loaded.stream(text or "", **options), (text or "") if echo else "")


def _looks_like_prompt(text: str) -> bool:
    """Not a model name (names are one word of letters, digits and ``.:/_-``); ``-`` reads stdin."""
    return text == "-" or re.fullmatch(r"[\w.:/-]+", text) is None


def _model_names() -> set[str]:
    from codellama_zoo.registry import get_registry

    registry = get_registry()
    return {n.lower() for spec in registry.models for n in (spec.name, *spec.aliases)}


@click.command("download")
@click.argument("model")
@click.option("--dir", "dest", type=click.Path(path_type=Path, file_okay=False), help="Target folder (default: $ZOO_HOME/<model>).")
@click.option("--revision", help="A branch, tag or commit of the Hugging Face repository.")
@click.option("--token", envvar="HF_TOKEN", help="Hugging Face token (default: $HF_TOKEN or the saved login).")
def download_command(model: str, dest: Path | None, revision: str | None, token: str | None) -> None:
    """Download MODEL's weights and tokenizer from the Hugging Face Hub into $ZOO_HOME."""
    from codellama_zoo.download import download
    from codellama_zoo.registry import get_registry

    name = get_registry().model(model).name
    path = download(model, dest, revision=revision, token=token)
    click.echo(f"downloaded {name} to {path}")
    suffix = "" if dest is None else f" --weights {path}"
    click.echo(f"run it with: zoo run {name}{suffix}")
