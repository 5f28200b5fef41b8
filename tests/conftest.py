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


@pytest.fixture(scope="session")
def scifact_splade_index(tmp_path_factory, splade_tiny, scifact_dir) -> Path:
    """A real index: all 5,183 SciFact documents encoded by the shared splade-tiny (the preset's settings,
    8-bit impacts), with the encoder recorded so that text queries work. Built once per test session;
    read-only for the tests that use it."""
    import lsr

    out = tmp_path_factory.mktemp("scifact-splade") / "index"
    lsr.build_index(str(scifact_dir / "corpus.jsonl"), out, encoder="splade-tiny", model_path=str(splade_tiny))
    return out


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for the whole session (``ray.init(num_cpus=2)``), shut down at the end.
    A small object store keeps it within the test machine's memory."""
    import ray   # the distributed extra, which `make test` installs
    ray.init(num_cpus=2, object_store_memory=256 * 2**20, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()
