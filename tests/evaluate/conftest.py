"""Fixtures of the evaluation tests: a tiny littune run with its open_clip export, and torch caches."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """(run, export folder, root): timm test_vit + a 2-layer BERT, heads set non-trivially, exported."""
    import littune
    from littune.infer.export import export_model
    from tests.infer.test_open_clip import _run

    root = tmp_path_factory.mktemp("parity_tiny")
    run = _run(root, [])
    export_model(littune.load(run), root / "oc", format="open_clip")
    return run, root / "oc", root


@pytest.fixture
def torch_engine(monkeypatch):
    """Caches by torch: compiling each tower for OpenVINO (twice: the run's and the export's) would take
    most of a test, and open_clip's side runs torch anyway."""
    from littune.towers import engine

    monkeypatch.setattr(engine, "available", lambda name: name == "torch")
