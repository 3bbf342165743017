"""Shared fixtures: a fresh plugin manager per test, paths to shared assets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from codellama_zoo import plugins
from shared_assets import ASSETS, ROOT, asset

__all__ = ["ASSETS", "ROOT", "asset"]


@pytest.fixture(autouse=True)
def fresh_plugin_manager() -> Iterator[None]:
    """Every test starts with a newly built plugin manager and registry."""
    plugins.set_plugin_manager(None)
    yield
    plugins.set_plugin_manager(None)


@pytest.fixture
def llama2_tokenizer_model() -> Path:
    return asset("llama2-tokenizer/tokenizer.model")
