"""Suite-wide fixtures. Tests never download: tiny models are built from configs and saved locally."""
from __future__ import annotations

import os
import signal
import sys
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


@pytest.fixture(autouse=True)
def _no_dataloader_sigchld_handler_between_tests():
    """Put SIGCHLD back to its default after each test.

    A DataLoader with worker processes installs a process-wide SIGCHLD handler (torch's
    ``_set_SIGCHLD_handler``) that stays after the loader is gone. In a long-lived test worker that
    later starts subprocesses, every child's exit then runs torch's C check of its worker-pid table;
    on this machine that crashed pytest-xdist workers with SIGSEGV (exit status 11) in tests that
    merely ran ``subprocess.run``, and xdist's loadgroup scheduler then hung on the lost worker until
    CI's time ran out. littune's own commands run one job per process and never mix the two.
    Resetting it after each test gives every test the signal state of a fresh process; torch installs
    the handler again for the next loader that needs it.
    """
    before = signal.getsignal(signal.SIGCHLD)
    yield
    if signal.getsignal(signal.SIGCHLD) is not before:
        signal.signal(signal.SIGCHLD, before)
        handling = sys.modules.get("torch.utils.data._utils.signal_handling")
        if handling is not None:
            handling._SIGCHLD_handler_set = False
