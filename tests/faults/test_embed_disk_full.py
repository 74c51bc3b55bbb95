"""The disk fills while ``littune embed`` writes (issue 13.8): the error says so, nothing written
before is lost, no half-written file is left (no shard, no ``.tmp``, the manifest still valid),
and the same command after space is freed ends with the files of an uninterrupted run."""
from __future__ import annotations

import errno
import json
import os
import pathlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import littune.cache.writer as writer
from littune.cache import EmbedOptions, Manifest, embed
from littune.cache.verify import shard_problems
from tests.cache.conftest import tower, tower_weights  # noqa: F401  (session fixtures)
from tests.cache.tiny_data import files_of

from .cache_files import embedded

N, SHARD = 20, 4
OPTS = dict(shard_size=SHARD, batch_size=4, num_workers=0, progress=False, views=1)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tower):  # noqa: F811
    return embedded(tmp_path_factory.mktemp("disk_full"), tower, N, **OPTS)


def full_disk_at(n: int, real, half):
    """A writer that works ``n`` times, then writes half its bytes and fails as a full disk does."""
    calls = []

    def write(*args, **kwargs):
        calls.append(1)
        if len(calls) <= n:
            return real(*args, **kwargs)
        half(*args)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return write


def _half_npy(path, array) -> None:
    Path(path).write_bytes(b"\x93NUMPY" + bytes(array.nbytes // 2))


def _half_parquet(table, path) -> None:
    Path(path).write_bytes(b"PAR1" + b"\0" * 40)


def _half_text(self, text, *a, **k) -> None:
    _real_write_text(self, text[: len(text) // 2])


_real_write_text = pathlib.Path.write_text
CASES = {  # which write finds the disk full
    "embeddings of shard 2": lambda mp: mp.setattr(writer, "save_npy", full_disk_at(5, writer.save_npy, _half_npy)),
    "views of shard 3": lambda mp: mp.setattr(writer, "save_npy", full_disk_at(6, writer.save_npy, _half_npy)),
    "metadata of shard 1": lambda mp: mp.setattr(pq, "write_table", full_disk_at(1, pq.write_table, _half_parquet)),
    "the final manifest": lambda mp: mp.setattr(
        pathlib.Path, "write_text", lambda self, text, *a, **k: (
            full_disk_at(0, _real_write_text, _half_text)(self, text, *a, **k) if '"complete": true' in text
            else _real_write_text(self, text, *a, **k))),
}


@pytest.mark.parametrize("case", CASES)
def test_a_full_disk_loses_nothing_and_leaves_nothing_half_written(case, reference, tower, tmp_path, monkeypatch):  # noqa: F811
    out = tmp_path / "cache"
    with monkeypatch.context() as mp:
        CASES[case](mp)
        with pytest.raises(OSError) as e:
            embed(str(reference["csv"]), tower, out, EmbedOptions(**OPTS))
    assert e.value.errno == errno.ENOSPC
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # no half-written file left
    m = Manifest.read(out)  # still valid JSON: the earlier, unfinished manifest
    assert m.complete is False
    done = sorted(int(p.stem.split("_")[-1]) for p in (out / "img_emb").glob("img_emb_*.npy"))
    want = {"embeddings of shard 2": [0, 1], "views of shard 3": [0, 1, 2], "metadata of shard 1": [0],
            "the final manifest": [0, 1, 2, 3, 4]}[case]
    assert done == want  # every shard written before the disk filled is kept ...
    for k in done:  # ... and whole
        assert shard_problems(out, m, k) == [], k
    # Space freed: the same command finishes the cache, equal to an uninterrupted run bit for bit.
    embed(str(reference["csv"]), tower, out, EmbedOptions(**OPTS))
    assert files_of(out) == files_of(reference["cache"])
    assert json.loads((out / "manifest.json").read_text())["complete"] is True
