"""Paths to the real data in ../shared/assets; tests skip when it is absent.

A module with a unique name (not ``conftest``) so any test can import it
whichever conftest files pytest has loaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("ZOO_SHARED_ASSETS", ROOT.parent / "shared" / "assets"))


def asset(relative: str) -> Path:
    """Path of a file in ../shared/assets, skipping the test when it is absent."""
    path = ASSETS / relative
    if not path.exists():
        pytest.skip(f"shared asset {relative} not found under {ASSETS} (set ZOO_SHARED_ASSETS to its folder)")
    return path
