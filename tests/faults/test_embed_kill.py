"""``kill -9`` at random points of ``littune embed`` and ``littune index``, then the same command again:
the result equals an uninterrupted run's bit for bit (issue 13.8, the cache side).

The killed command runs in a subprocess whose every file write is slowed down (``_BOOT``), so a kill
lands anywhere: inside a shard's writes, between them, in the final manifest or in the index's own
files. Where it lands is drawn from a seeded generator after the run has started writing.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from littune.cli import main
from tests.cache.conftest import tower_weights  # noqa: F401  (session fixture)
from tests.cache.tiny_data import (TOWER, cli_env, files_of, killed_at_the_end, make_dataset, one_thread,
                                   wait_for_file)


SEEDS = (0, 1, 2)  # embed; the index (slower to start: a model to load) takes the first two
DELAY = 0.1  # seconds before each file write in the killed run

# Every atomic write (shard files, bad lists, the index's files) and the manifest waits DELAY first.
_BOOT = """
import os, sys, time
delay = float(os.environ["LITTUNE_TEST_WRITE_DELAY"])
import littune.cache.manifest as manifest
import littune.cache.writer as writer
import littune.infer.index as index
atomic, write_manifest = writer.save_atomic, manifest.Manifest.write
def slow_atomic(*a, **k):
    time.sleep(delay)
    return atomic(*a, **k)
def slow_manifest(*a, **k):
    time.sleep(delay)
    return write_manifest(*a, **k)
writer.save_atomic = index.save_atomic = slow_atomic
manifest.Manifest.write = slow_manifest
from littune.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _kill_at_random(args: list[str], started: Path, seed: int, window: float) -> float:
    """Run ``littune ARGS`` in a subprocess, kill -9 it a random time after ``started`` appears."""
    env = {**cli_env(), "LITTUNE_TEST_WRITE_DELAY": str(DELAY)}
    proc = subprocess.Popen([sys.executable, "-c", _BOOT, *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    wait = float(np.random.default_rng(seed).uniform(0, window))
    with killed_at_the_end(proc):
        wait_for_file(started, proc, "write", timeout=180)
        time.sleep(wait)
    return wait


def _same(full: Path, resumed: Path, skip_json: dict[str, tuple[str, ...]] | None = None) -> None:
    a, b = files_of(full), files_of(resumed)
    assert sorted(a) == sorted(b)
    for name in a:
        if name in (skip_json or {}):  # a JSON file with a time stamp: every other key equal
            ja, jb = json.loads(a[name]), json.loads(b[name])
            for key in skip_json[name]:
                ja.pop(key), jb.pop(key)
            assert ja == jb, name
        else:
            assert a[name] == b[name], f"{name} differs between the uninterrupted and the resumed run"


@pytest.fixture(scope="module")
def embed_data(tmp_path_factory, tower_weights) -> dict:  # noqa: F811
    root = tmp_path_factory.mktemp("embed_kill")
    csv = make_dataset(root / "data", 24)

    def args(out: Path) -> list[str]:
        return ["embed", "--data", str(csv), "--out", str(out), "--tower", TOWER, "--checkpoint", str(tower_weights),
                "--shard-size", "4", "--batch-size", "4", "--workers", "0", "--views", "1", "--no-progress"]

    with one_thread():
        assert main(args(root / "full")) == 0
    return {"args": args, "full": root / "full"}


@pytest.mark.xdist_group("subprocess")
@pytest.mark.parametrize("seed", SEEDS)
def test_embed_killed_at_a_random_point_resumes_to_the_samefiles_of(seed, embed_data, tmp_path):
    out = tmp_path / "cache"
    # after the first manifest: 6 shards x 4 writes (bad list, metadata, views, embeddings), the bad-input
    # report and the final manifest, each DELAY late: at least 2.6 s, so the kill comes before the end
    _kill_at_random(embed_data["args"](out), out / "manifest.json", seed, window=2.5)
    assert json.loads((out / "manifest.json").read_text())["complete"] is False
    with one_thread():
        assert main(embed_data["args"](out)) == 0
    _same(embed_data["full"], out)


@pytest.fixture(scope="module")
def index_data(tiny_lit_run, tmp_path_factory) -> dict:
    import shutil

    root = tmp_path_factory.mktemp("index_kill")
    folder = root / "photos"
    folder.mkdir()
    for p in tiny_lit_run["images"][:20]:
        shutil.copy(p, folder / p.name)

    def args(out: Path) -> list[str]:
        return ["index", "--model", str(tiny_lit_run["run"]), str(folder), "--out", str(out), "--shard-size", "4",
                "--batch-size", "4", "--workers", "0", "--faiss-threshold", "0", "--no-progress"]

    with one_thread():
        assert main(args(root / "full")) == 0
    return {"args": args, "full": root / "full"}


@pytest.mark.xdist_group("subprocess")
@pytest.mark.parametrize("seed", SEEDS[:2])
def test_index_killed_at_a_random_point_resumes_to_the_samefiles_of(seed, index_data, tmp_path):
    out = tmp_path / "photos.index"
    # after the first manifest: 5 shards x 3 writes, the report, the final manifest, embeddings, faiss and
    # index.json, each DELAY late: at least 2 s, so the kill comes before the end
    _kill_at_random(index_data["args"](out), out / "features" / "manifest.json", seed, window=1.9)
    assert not (out / "index.json").exists()
    with one_thread():
        assert main(index_data["args"](out)) == 0
    assert json.loads((out / "index.json").read_text())["bad_inputs"] == str(out / "features" / "bad_inputs.tsv")
    _same(index_data["full"], out, skip_json={"index.json": ("created", "bad_inputs")})
