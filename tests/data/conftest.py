"""Fixtures for the data tests: the shared real-data folder, located without any download."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.ci import missing

# tests/data/conftest.py -> parents[2] is the repo root; the shared data sits beside the repo.
DEFAULT_SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def shared_data_dir() -> Path:
    """``$LITTUNE_SHARED_DATA`` if set, else ``<repo>/../shared/data``."""
    return Path(os.environ.get("LITTUNE_SHARED_DATA", DEFAULT_SHARED_DATA)).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    folder = shared_data_dir()
    if not folder.is_dir():
        missing(f"real data not found at {folder} (set LITTUNE_SHARED_DATA to its folder)")
    return folder


@pytest.fixture(scope="session")
def flickr8k_root(shared_data: Path) -> Path:
    folder = shared_data / "flickr8k"
    if not (folder / "captions.csv").is_file():
        missing(f"Flickr8k not found at {folder}")
    return folder
