"""Content fingerprints that see content (issue 24, item 3): embedding hashes the bytes it decodes
(each file read once), records per image and per shard, and ``littune cache verify --deep`` finds a
photo replaced by another of exactly the same size, which sizes (the default check, and the
content fingerprint that picks automatic caches) cannot see.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import littune.data.images as images_mod
from littune.cache import EmbedOptions, content_fingerprint, embed, load_items, verify_cache
from littune.cache.verify import source_digest
from littune.cli import main
from tests.cache.conftest import tower, tower_weights  # noqa: F401  (session fixtures)
from tests.cache.tiny_data import make_dataset

N, SHARD = 6, 4  # shards of 4 and 2 images


@pytest.fixture(scope="module")
def made(tmp_path_factory, tower):  # noqa: F811
    root = tmp_path_factory.mktemp("source_hashes")
    reads = []
    real = images_mod._read_file
    with pytest.MonkeyPatch.context() as mp:  # counts the files embedding reads
        mp.setattr(images_mod, "_read_file", lambda path, *a, **k: reads.append(Path(path).name) or real(path, *a, **k))
        csv = make_dataset(root / "data", N)
        embed(str(csv), tower, root / "cache", EmbedOptions(shard_size=SHARD, num_workers=0, progress=False))
    return {"csv": csv, "cache": root / "cache", "reads": reads, "images": root / "data" / "images"}


@pytest.fixture
def embedded(made):
    """The embedded data, its images and manifest restored after each test (the cache's image paths are
    absolute, so the tests change the one copy and put it back)."""
    keep = {p: p.read_bytes() for p in [*made["images"].iterdir(), made["cache"] / "manifest.json"]}
    yield made
    for p in made["images"].iterdir():
        p.unlink()
    for p, data in keep.items():
        p.write_bytes(data)


def _same_size_other_photo(path: Path) -> None:
    """Replace the JPEG at ``path`` with another picture padded to the very same number of bytes
    (decoders stop at the end-of-image marker)."""
    size = path.stat().st_size
    buf = io.BytesIO()
    Image.fromarray(np.full((48, 48, 3), (0, 200, 200), np.uint8)).save(buf, format="JPEG", quality=30)
    data = buf.getvalue()
    assert len(data) < size
    path.write_bytes(data + b"\0" * (size - len(data)))
    assert path.stat().st_size == size


def test_embedding_records_each_images_hash_read_once(embedded):
    cache = embedded["cache"]
    assert sorted(embedded["reads"]) == sorted(p.name for p in embedded["images"].iterdir())  # one read per file
    m = json.loads((cache / "manifest.json").read_text())
    for rec in m["shards"]:
        t = pq.read_table(cache / "metadata" / f"metadata_{rec['index']}.parquet").to_pydict()
        files = [Path(p).read_bytes() for p in t["image_path"]]
        assert t["sha256"] == [hashlib.sha256(b).hexdigest() for b in files]  # the bytes' hash, not the pixels'
        assert t["bytes"] == [len(b) for b in files]
        assert rec["source"] == {"sha256": source_digest(t["key"], t["sha256"]), "bytes": sum(map(len, files)),
                                 "images": rec["count"]}
    assert [r["source"]["images"] for r in m["shards"]] == [4, 2]


def test_deep_verify_finds_a_photo_replaced_by_one_of_the_same_size(embedded, capsys):
    cache, photo = embedded["cache"], embedded["images"] / "img_005.jpg"  # in shard 1
    before = content_fingerprint(load_items(str(embedded["csv"]))[0])
    _same_size_other_photo(photo)
    assert content_fingerprint(load_items(str(embedded["csv"]))[0]) == before  # sizes cannot see it
    (report,) = verify_cache(cache)  # the default: sizes, which match
    assert report.ok and report.n_sources == N
    (report,) = verify_cache(cache, deep=True)
    assert list(report.problems) == [1] and report.n_sources == N
    assert report.problems[1][0].startswith(f"image 'images/img_005.jpg' ({photo}): its bytes changed since it "
                                            "was embedded")
    capsys.readouterr()
    assert main(["cache", "verify", str(cache)]) == 0
    assert f"{N} source images match their sizes" in capsys.readouterr().out
    assert main(["cache", "verify", str(cache), "--deep"]) == 2
    err = capsys.readouterr().err
    assert "is damaged: shard 1: image 'images/img_005.jpg'" in err and "Traceback" not in err
    assert "restore the original images, or embed the data again into a new folder" in err


def test_default_verify_finds_a_source_of_another_size_and_notes_missing_ones(embedded, capsys):
    cache, images = embedded["cache"], embedded["images"]
    (images / "img_001.jpg").write_bytes((images / "img_001.jpg").read_bytes() + b"\0")
    (images / "img_004.jpg").unlink()
    (report,) = verify_cache(cache)
    assert report.problems == {0: [f"image 'images/img_001.jpg' ({images / 'img_001.jpg'}): "
                                   f"{(images / 'img_001.jpg').stat().st_size} bytes now, "
                                   f"{(images / 'img_001.jpg').stat().st_size - 1} when embedded"]}
    assert report.notes == ["1 source images not found (moved, or streamed bytes never stored as files); "
                            "sizes of the others checked"]
    (report,) = verify_cache(cache, deep=True)  # --deep cannot re-hash a missing file: a problem
    assert "1 source images not found" in report.problems[-1][0] and 0 in report.problems


def test_a_source_hash_that_disagrees_with_the_manifest_is_named(embedded, capsys):
    cache = embedded["cache"]
    m = json.loads((cache / "manifest.json").read_text())
    m["shards"][0]["source"]["sha256"] = "0" * 64
    (cache / "manifest.json").write_text(json.dumps(m))
    capsys.readouterr()
    assert main(["cache", "verify", str(cache)]) == 2
    assert ("shard 0: metadata/metadata_0.parquet: its images' SHA-256 do not make the manifest's source digest"
            in capsys.readouterr().err)
