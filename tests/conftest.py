"""Suite-wide fixtures. Tests never download: tiny models are built from configs and saved locally."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.ci import missing

# Belt and braces: any accidental hub lookup fails fast instead of reaching the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

if os.environ.get("PYTEST_XDIST_WORKER"):  # share the cores between xdist workers (no oversubscription)
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))

# tests/conftest.py -> parents[1] is the repo root; the shared real data sits beside the repo.
DEFAULT_SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data folder: ``$LITTUNE_SHARED_DATA`` if set, else ``<repo>/../shared/data``."""
    folder = Path(os.environ.get("LITTUNE_SHARED_DATA") or DEFAULT_SHARED_DATA).resolve()
    if not folder.is_dir():
        missing(f"shared real data not found at {folder} (set LITTUNE_SHARED_DATA to its folder)")
    return folder


@pytest.fixture(scope="session")
def tiny_lit_run(tmp_path_factory) -> dict:
    """A tiny LiT run trained for a few steps (tests/infer/tiny_lit.py): run dir, images, captions."""
    from tests.infer.tiny_lit import train_tiny_run

    return train_tiny_run(tmp_path_factory.mktemp("tiny_lit"))
