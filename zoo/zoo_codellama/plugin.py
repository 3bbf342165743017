"""Registers the twelve Code Llama variants."""

from __future__ import annotations

from codellama_zoo import hookimpl
from codellama_zoo.hookspecs import Register
from codellama_zoo.specs import ModelSpec
from zoo_codellama.presets import ARCHITECTURES, CONTEXT, PUBLISHED_PARAMS, architecture

VARIANTS = ("base", "python", "instruct")
_HF_SUFFIX = {"base": "", "python": "-Python", "instruct": "-Instruct"}
_TAG_SUFFIX = {"base": "", "python": "-python", "instruct": "-instruct"}
_DESCRIPTION = {
    "base": "Code Llama {size}: general code completion",
    "python": "Code Llama - Python {size}: specialised on Python",
    "instruct": "Code Llama - Instruct {size}: follows instructions, chat",
}


def _can_infill(size: str, variant: str) -> bool:
    # Code Llama paper, section 2.3: infilling was trained for 7B and 13B base
    # (and kept in their Instruct models); Python, 34B and 70B cannot infill.
    return size in ("7b", "13b") and variant in ("base", "instruct")


def _prompt_format(size: str, variant: str) -> str:
    if variant != "instruct":
        return "completion"
    # 70B Instruct uses the "Source: system ... <step>" template, not [INST].
    return "codellama-70b-instruct" if size == "70b" else "codellama-instruct"


def codellama_specs() -> list[ModelSpec]:
    specs = []
    for size in ARCHITECTURES:
        for variant in VARIANTS:
            infill = _can_infill(size, variant)
            capabilities = {"completion"}
            if infill:
                capabilities.add("infill")
            if variant == "instruct":
                capabilities.add("chat")
            suffix = _TAG_SUFFIX[variant]
            hf_repo = f"codellama/CodeLlama-{size}{_HF_SUFFIX[variant]}-hf"
            specs.append(
                ModelSpec(
                    name=f"codellama-{size}{suffix}",
                    family="codellama",
                    size=size,
                    variant=variant,
                    config=architecture(size, variant),
                    aliases=(hf_repo, f"codellama:{size}{suffix}"),
                    tokenizer="sentencepiece",
                    prompt_format=_prompt_format(size, variant),
                    infill_formats=("infill-psm", "infill-spm") if infill else (),
                    capabilities=frozenset(capabilities),
                    context_length=CONTEXT,
                    hf_repo=hf_repo,
                    published_params=PUBLISHED_PARAMS[size],
                    description=_DESCRIPTION[variant].format(size=size.upper()),
                    source=f"Meta params.json for CodeLlama-{size}{_HF_SUFFIX[variant]}; HF {hf_repo}/config.json",
                )
            )
    return specs


@hookimpl
def register_models(register: Register) -> None:
    for spec in codellama_specs():
        register(spec)
