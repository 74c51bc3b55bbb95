"""`littune cache verify` checks the manifest's counts against the shards: items, captions, widths and
the shard count. Before, each of these edits (and a cache embedded with --shard-size -5, empty and
marked complete) was called ok.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from littune.cli import main
from tests.cache.conftest import tower, tower_weights  # noqa: F401  (session fixtures)

from .cache_files import embedded

N, SHARD = 20, 8


@pytest.fixture(scope="module")
def good(tmp_path_factory, tower):  # noqa: F811
    return embedded(tmp_path_factory.mktemp("counts"), tower, N, shard_size=SHARD, batch_size=8, num_workers=0,
                    progress=False)


def _edit(cache: Path, change) -> None:
    path = cache / "manifest.json"
    m = json.loads(path.read_text())
    change(m)
    path.write_text(json.dumps(m))


EDITS = {
    "items": (lambda m: m.update(n_items=m["n_items"] + 3), "3 vanished without a reason"),
    "captions": (lambda m: m.update(n_captions=m["n_captions"] + 1), "captions, the manifest's n_captions is"),
    "width": (lambda m: m.update(embed_dim=m["embed_dim"] * 2), "the cache's embed_dim is"),
    "shard count": (lambda m: m.update(n_items=16, count=16, n_captions=16, shards=m["shards"][:2]),
                    "the manifest lists 2 shards, img_emb/ also holds img_emb_2.npy"),
    "negative shard size": (lambda m: m.update(shard_size=-5, shards=[], n_items=0, count=0),
                            "shard size is -5"),
}


@pytest.mark.parametrize("case", EDITS)
def test_verify_cross_checks_the_manifest_counts(case, good, tmp_path, capsys):
    cache = Path(shutil.copytree(good["cache"], tmp_path / "cache"))
    assert main(["cache", "verify", str(cache)]) == 0
    change, what = EDITS[case]
    _edit(cache, change)
    capsys.readouterr()
    assert main(["cache", "verify", str(cache)]) == 2
    err = capsys.readouterr().err
    assert what in err and "Traceback" not in err, err
