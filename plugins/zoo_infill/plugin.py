"""Registers the PSM and SPM infill prompt formats."""

from __future__ import annotations

from codellama_zoo import hookimpl
from codellama_zoo.hookspecs import Register
from codellama_zoo.specs import PromptFormatSpec
from zoo_infill.prompts import build_psm, build_spm

EOT_PIECE = "▁<EOT>"


@hookimpl
def register_prompt_formats(register: Register) -> None:
    register(
        PromptFormatSpec(
            name="infill-psm",
            kind="infill",
            description="fill in the middle, prefix first: <PRE> prefix <SUF>suffix <MID>",
            build=build_psm,
            stop_tokens=(EOT_PIECE,),
        )
    )
    register(
        PromptFormatSpec(
            name="infill-spm",
            kind="infill",
            description="fill in the middle, suffix first: <PRE><SUF>suffix <MID> prefix",
            build=build_spm,
            stop_tokens=(EOT_PIECE,),
        )
    )
