"""Shared fixtures: the real data in ../shared (see ../shared/README.md)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:   # benchmarks/ (not installed) is imported from the checkout
    sys.path.append(str(ROOT))
SHARED = Path(os.environ.get("LSR_SHARED_DIR", ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    assert SHARED.is_dir(), f"the shared data directory {SHARED} is missing (see README: tests need ../shared)"
    return SHARED


@pytest.fixture(scope="session")
def splade_tiny(shared_dir) -> Path:
    p = shared_dir / "models" / "splade-tiny"
    assert (p / "model.safetensors").is_file()
    return p


@pytest.fixture(scope="session")
def scifact_dir(shared_dir) -> Path:
    p = shared_dir / "data" / "beir" / "scifact"
    assert (p / "corpus.jsonl").is_file()
    return p
