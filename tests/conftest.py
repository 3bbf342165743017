"""Shared fixtures: a fresh plugin manager per test, paths to shared assets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from codellama_zoo import plugins

ROOT = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("ZOO_SHARED_ASSETS", ROOT.parent / "shared" / "assets"))


def asset(relative: str) -> Path:
    """Path of a file in ../shared/assets, skipping the test when it is absent."""
    path = ASSETS / relative
    if not path.exists():
        pytest.skip(f"shared asset {relative} not found under {ASSETS} (set ZOO_SHARED_ASSETS to its folder)")
    return path


@pytest.fixture(autouse=True)
def fresh_plugin_manager() -> Iterator[None]:
    """Every test starts with a newly built plugin manager and registry."""
    plugins.set_plugin_manager(None)
    yield
    plugins.set_plugin_manager(None)


@pytest.fixture
def llama2_tokenizer_model() -> Path:
    return asset("llama2-tokenizer/tokenizer.model")
