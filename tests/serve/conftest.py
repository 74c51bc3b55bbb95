"""Fixtures for the web app: an index over the tiny images, an in-process client, a real server."""
from __future__ import annotations

import shutil

import pytest

import littune
from littune.infer import IndexOptions
from tests.serve.live import start_server


@pytest.fixture(scope="session")
def serve_lit(tiny_lit_run):
    return littune.load(tiny_lit_run["run"])


@pytest.fixture(scope="session")
def serve_index(serve_lit, tiny_lit_run, tmp_path_factory):
    photos = tmp_path_factory.mktemp("serve_photos")
    for p in tiny_lit_run["images"]:
        shutil.copy(p, photos / p.name)
    return serve_lit.build_index(photos, tmp_path_factory.mktemp("serve_idx") / "photos.index",
                                 IndexOptions(progress=False, num_workers=0))


@pytest.fixture(scope="module")
def live_server(tiny_lit_run, serve_index):
    """`littune serve` in its own process on a loopback port: {"url", "proc", "port"}."""
    with start_server(tiny_lit_run["run"], "--index", str(serve_index.folder)) as server:
        yield server
