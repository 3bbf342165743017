"""``zoo convert``, ``zoo bench`` and ``zoo attention``: the torch runtime's commands.

Heavy imports (torch, transformers) happen inside the command bodies so that
``zoo --help`` stays fast.
"""

from __future__ import annotations

import json
from typing import Any

import click

from codellama_zoo.errors import UsageError


class FormatChoice(click.ParamType):
    """``--to``: any registered checkpoint format that can be written (read from the registry)."""

    name = "format"

    def _writable(self) -> list[str]:
        from codellama_zoo.registry import get_registry

        return [s.name for s in get_registry().checkpoint_formats if s.save is not None]

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        try:
            return "[" + "|".join(self._writable()) + "]"
        except Exception:  # never break --help
            return "FORMAT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        known = self._writable()
        if value not in known:
            self.fail(f"{value!r} is not a writable checkpoint format; choose from: {', '.join(known)}", param, ctx)
        return str(value)


@click.command("convert")
@click.argument("src", type=click.Path(file_okay=False, path_type=str))
@click.argument("dst", type=click.Path(path_type=str))
@click.option("--to", "to", required=True, type=FormatChoice(), help="Format to write (a registered format).")
@click.option("--dtype", type=click.Choice(["bf16", "fp16", "fp32"]), default=None,
              help="Cast floating tensors (default: keep the checkpoint's dtype, bit-exact).")
@click.option("--model", "model_name", default=None,
              help="Architecture of SRC when it has no config file (a model name), checked against it otherwise.")
@click.option("--shards", type=int, default=None,
              help="Split into N files (meta: model-parallel shards; hf/zoo: N safetensors files).")
@click.option("--max-shard-size", default=None, help="hf/zoo/hf-bin: largest file, e.g. 5GB, 500MB (default 5GB).")
@click.option("--overwrite", is_flag=True, help="Replace DST if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def convert_command(src: str, dst: str, to: str, dtype: str | None, model_name: str | None, shards: int | None,
                    max_shard_size: str | None, overwrite: bool, quiet: bool) -> None:
    """Convert the checkpoint in SRC (format detected) to DST in another format.

    Tensors are copied bit-exactly unless --dtype casts them; Meta's interleaved
    RoPE layout of wq/wk is permuted to and from Hugging Face's rotate-half
    layout, and model-parallel shards are merged or split. DST is written to a
    temporary directory first and renamed into place.
    """
    from zoo_torch import checkpoints

    config = None
    if model_name is not None:
        from codellama_zoo.registry import get_registry

        config = get_registry().model(model_name).config
    options: dict[str, Any] = {}
    if shards is not None:
        if shards < 1:
            raise UsageError(f"--shards must be a positive integer, got {shards}")
        options["shards"] = shards
    if max_shard_size is not None:
        options["max_shard_bytes"] = parse_size(max_shard_size)
    fmt = checkpoints.detect_format(src)
    declared = fmt.read_config(src) if fmt.read_config is not None else None
    if config is not None and declared is not None:
        if checkpoints.expected_shapes(declared) != checkpoints.expected_shapes(config):
            raise UsageError(
                f"--model {model_name} does not match the checkpoint in {src}: it declares dim={declared.dim}, "
                f"n_layers={declared.n_layers}, n_heads={declared.n_heads}, kv_heads={declared.kv_heads}, "
                f"vocab={declared.vocab_size}; drop --model to use the checkpoint's own config"
            )
        config = declared
    out = checkpoints.convert(src, dst, to, dtype=dtype, overwrite=overwrite, config=config, quiet=quiet, **options)
    if not quiet:
        click.echo(f"wrote {to} checkpoint to {out} (from {fmt.name} in {src})", err=True)


def parse_size(text: str) -> int:
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    s = text.strip().upper()
    num = s.rstrip("KMGIB")
    unit = s[len(num):]
    try:
        value = float(num)
    except ValueError:
        raise UsageError(f"--max-shard-size {text!r}: expected a size like 5GB or 500MB") from None
    if unit not in units or value <= 0:
        raise UsageError(f"--max-shard-size {text!r}: expected a size like 5GB or 500MB")
    return int(value * units[unit])


@click.command("attention")
@click.option("--device", default="auto", help="Device to check availability on (auto, cpu, cuda, cuda:N).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def attention_command(device: str, as_json: bool) -> None:
    """List the torch attention implementations, their availability, and what `auto` picks."""
    from zoo_torch.attention import attention_table
    from zoo_torch.runtime import resolve_device

    dev = resolve_device(device)
    rows = attention_table(dev)
    if as_json:
        click.echo(json.dumps({"device": dev, "implementations": rows}, indent=2))
        return
    click.echo(f"attention implementations for torch on {dev} (auto picks the first available):")
    for r in rows:
        mark = "*" if r["auto"] else " "
        state = "available" if r["available"] else f"unavailable: {r['reason']}"
        click.echo(f" {mark} {r['name']:<8} priority {r['priority']:>3}  {state}")
        click.echo(f"             {r['description']}")


@click.command("bench")
@click.option("--config", "which", type=click.Choice(["small", "7b-2l", "all", "micro"]), default="all",
              help="small: a small Llama; 7b-2l: full-width 7B shape with 2 layers; micro: a smoke-test size.")
@click.option("--dtype", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32")
@click.option("--threads", type=int, default=None, help="torch threads for both models (default: torch's).")
@click.option("--batch", type=int, default=1)
@click.option("--prompt-len", type=int, default=None, help="Prompt length (default per config).")
@click.option("--new-tokens", type=int, default=None, help="Decoded tokens (default per config).")
@click.option("--repeats", type=int, default=3, help="Best of N timings within each run.")
@click.option("--rounds", type=int, default=2, help="Run each model N times, alternating; keep each one's best.")
@click.option("--attention", default="auto", help="Our attention implementation.")
@click.option("--compile/--no-compile", "use_compile", default=True, show_default=True,
              help="Also time our decode under torch.compile (compile time is not counted).")
@click.option("--no-transformers", is_flag=True, help="Only our model.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Also write results here.")
def bench_command(which: str, dtype: str, threads: int | None, batch: int, prompt_len: int | None,
                  new_tokens: int | None, repeats: int, rounds: int, attention: str, use_compile: bool,
                  no_transformers: bool, json_out: str | None) -> None:
    """Prefill/decode tokens/s and peak RSS: our torch model vs transformers.LlamaForCausalLM.

    Same random weights, dtype and threads; each model runs in its own child
    process so that peak RSS is its own. Prints both side by side and the ratios.
    """
    from zoo_torch.bench import run_bench

    results = run_bench(which=which, dtype=dtype, threads=threads, batch=batch, prompt_len=prompt_len,
                        new_tokens=new_tokens, repeats=repeats, attention=attention, use_compile=use_compile,
                        with_transformers=not no_transformers, echo=click.echo, rounds=rounds)
    if json_out:
        with open(json_out, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
