"""The ``zoo`` command line: a click group that plugins extend.

Built-in commands here only read the registry. Plugins add their own through
``register_commands``, loaded the first time the command list is needed.
Every :class:`ZooError` becomes a one-line message and a non-zero exit code;
no traceback unless ``ZOO_DEBUG=1``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import attrs
import click

from codellama_zoo.errors import ZooError
from codellama_zoo.plugins import DISTRIBUTION, _version, get_plugin_manager
from codellama_zoo.registry import get_registry
from codellama_zoo.specs import DTYPE_BYTES, ModelSpec
from codellama_zoo.training import train_command


class ZooClickError(click.ClickException):
    """Carries a ZooError to click's one-line error printing."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]

    def show(self, file: Any = None) -> None:
        click.echo(f"zoo: error: {self.format_message()}", err=True)


class ZooGroup(click.Group):
    """Loads plugin commands lazily and turns project errors into one line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._builtin: set[str] = set()
        self._loaded_for: object = None

    def _ensure_plugin_commands(self) -> None:
        pm = get_plugin_manager()
        if self._loaded_for is pm:
            return
        if not self._builtin:
            self._builtin = set(self.commands)
        for name in list(self.commands):
            if name not in self._builtin:
                del self.commands[name]
        self._loaded_for = pm
        get_registry().add_commands(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._ensure_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._ensure_plugin_commands()
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name = args[0] if args else ""
        if name and self.get_command(ctx, name) is None and not name.startswith("-"):
            import difflib

            close = difflib.get_close_matches(name, self.list_commands(ctx), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ZooClickError(f"no such command {name!r}{hint} (see `zoo --help`)", 2)
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ZooError as exc:
            if os.environ.get("ZOO_DEBUG"):
                raise
            raise ZooClickError(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            click.echo("", err=True)
            ctx.exit(130)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except Exception as exc:
            if os.environ.get("ZOO_DEBUG"):
                raise
            raise ZooClickError(
                f"internal error: {type(exc).__name__}: {exc} (set ZOO_DEBUG=1 to see the traceback)", 1
            ) from None


@click.group(cls=ZooGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=_version(), package_name=DISTRIBUTION, prog_name="zoo")
def cli() -> None:
    """codellama-zoo: run, convert, train and evaluate Code Llama models."""


def _fmt_params(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def _model_row(spec: ModelSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "family": spec.family,
        "size": spec.size,
        "variant": spec.variant,
        "params": spec.config.param_count(),
        "capabilities": sorted(spec.capabilities),
        "context_length": spec.context_length,
        "aliases": list(spec.aliases),
    }


@cli.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--family", help="Only this family, e.g. codellama.")
@click.option("--capability", help="Only models with this capability: completion, infill or chat.")
def models_command(as_json: bool, family: str | None, capability: str | None) -> None:
    """List the registered models."""
    from codellama_zoo.api import models
    from codellama_zoo.errors import UsageError
    from codellama_zoo.specs import CAPABILITIES

    if capability is not None and capability not in CAPABILITIES:
        raise UsageError(f"unknown capability {capability!r}; allowed: {', '.join(sorted(CAPABILITIES))}")
    specs = models(family=family, capability=capability)
    if family is not None and not specs:
        known = sorted({s.family for s in models()})
        raise UsageError(f"no models in family {family!r}; known families: {', '.join(known)}")
    rows = [_model_row(s) for s in specs]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    width = max((len(r["name"]) for r in rows), default=4)
    click.echo(f"{'NAME':<{width}}  {'PARAMS':>8}  {'CONTEXT':>7}  CAPABILITIES")
    for r in rows:
        click.echo(
            f"{r['name']:<{width}}  {_fmt_params(r['params']):>8}  {r['context_length']:>7}  "
            f"{','.join(r['capabilities'])}"
        )


def model_info(spec: ModelSpec) -> dict[str, Any]:
    """Everything `zoo info` shows, as data."""
    registry = get_registry()
    cfg = spec.config
    params = cfg.param_count()
    memory = {dtype: round(params * nbytes / 2**30, 2) for dtype, nbytes in DTYPE_BYTES.items()}
    kv_full = cfg.kv_cache_bytes_per_token("bf16") * spec.context_length / 2**30
    return {
        "name": spec.name,
        "family": spec.family,
        "size": spec.size,
        "variant": spec.variant,
        "description": spec.description,
        "plugin": registry.model_plugin(spec.name),
        "aliases": list(spec.aliases),
        "hf_repo": spec.hf_repo,
        "capabilities": sorted(spec.capabilities),
        "tokenizer": spec.tokenizer,
        "prompt_format": spec.prompt_format,
        "infill_formats": list(spec.infill_formats),
        "context_length": spec.context_length,
        "config": attrs.asdict(cfg),
        "params": params,
        "published_params_billions": spec.published_params,
        "weights_gib": memory,
        "kv_cache_bf16_gib_full_context": round(kv_full, 2),
        "source": spec.source,
    }


@cli.command("info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info_command(name: str, as_json: bool) -> None:
    """Show a model's architecture, sizes, memory needs and capabilities."""
    spec = get_registry().model(name)
    info = model_info(spec)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"{info['name']}  ({info['description']})")
    click.echo(f"  registered by   {info['plugin']}")
    click.echo(f"  aliases         {', '.join(info['aliases']) or '-'}")
    click.echo(f"  capabilities    {', '.join(info['capabilities'])}")
    click.echo(f"  prompt format   {info['prompt_format']}" + (
        f" (infill: {', '.join(info['infill_formats'])})" if info["infill_formats"] else ""))
    click.echo(f"  tokenizer       {info['tokenizer']}")
    click.echo(f"  context length  {info['context_length']}")
    published = info["published_params_billions"]
    click.echo(f"  parameters      {info['params']:,} ({_fmt_params(info['params'])}"
               + (f"; published {published}B)" if published else ")"))
    click.echo("  architecture")
    for key, value in info["config"].items():
        click.echo(f"    {key:<19} {value}")
    click.echo("  weights memory  " + ", ".join(f"{d} {g} GiB" for d, g in info["weights_gib"].items()))
    click.echo(f"  KV cache        {info['kv_cache_bf16_gib_full_context']} GiB in bf16 at {info['context_length']} tokens")
    if info["source"]:
        click.echo(f"  source          {info['source']}")


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def plugins_command(as_json: bool) -> None:
    """List loaded plugins, their versions and hooks, and failures."""
    pm = get_plugin_manager()
    infos = [attrs.asdict(i) for i in pm.plugin_infos()]
    failures = [{"name": f.name, "error": f.error} for f in pm.failures]
    if as_json:
        click.echo(json.dumps({"plugins": infos, "failures": failures}, indent=2))
        return
    for info in infos:
        origin = "built-in" if info["builtin"] else info["distribution"]
        click.echo(f"{info['name']}  {info['version']}  ({origin})")
        click.echo(f"    hooks: {', '.join(info['hooks']) or '-'}")
    for failure in failures:
        click.echo(f"FAILED {failure['name']}: {failure['error']}")


cli.add_command(train_command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="zoo")


if __name__ == "__main__":  # pragma: no cover
    main()
