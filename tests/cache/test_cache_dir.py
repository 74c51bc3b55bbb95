"""Automatic cache folders: found by what the data holds, whatever path it was reached by."""
from __future__ import annotations

import os
import shutil

import pyarrow.parquet as pq
import pytest
from PIL import Image

import littune.cache.writer as writer
from littune.cache import CacheMismatch, EmbedOptions, EmbeddingCache, Manifest, content_fingerprint, ensure_cache
from littune.cache.items import ImageItem, load_items
from littune.cache.naming import auto_cache_dir, canonical_spec, source_kind

from .tiny_data import make_images, write_csv


class _Pre:
    def __init__(self, crop_pct: float):
        self.crop_pct = crop_pct

    def to_dict(self) -> dict:
        return {"input_size": 224, "crop_pct": self.crop_pct}


class _Tower:
    name = "timm:test_vit"

    def __init__(self, fp: str = "abc", crop_pct: float = 0.875):
        self._fp = fp
        self.preprocess = _Pre(crop_pct)

    def fingerprint(self) -> str:
        return self._fp


def _opts(**kw) -> EmbedOptions:
    return EmbedOptions(**{"shard_size": 8, "batch_size": 8, "num_workers": 0, "progress": False, "engine": "torch",
                           **kw})


def test_the_folder_is_named_by_content_and_tower_not_by_path(tmp_path):
    root = str(tmp_path / "c")
    a = auto_cache_dir(root, "flickr8k:data/flickr8k:train", _Tower(), 0, "c0ffee")
    assert a == auto_cache_dir(root, "flickr8k:/elsewhere/f8k:train", _Tower(), 0, "c0ffee")
    assert a.name.startswith("flickr8k_train-timm_test_vit-")
    # Other content, another tower's weights or preprocessing, or another view count never share one.
    assert len({a, auto_cache_dir(root, "flickr8k:data/flickr8k:train", _Tower(), 0, "decaf"),
                auto_cache_dir(root, "flickr8k:data/flickr8k:train", _Tower("other"), 0, "c0ffee"),
                auto_cache_dir(root, "flickr8k:data/flickr8k:train", _Tower(crop_pct=1.0), 0, "c0ffee"),
                auto_cache_dir(root, "flickr8k:data/flickr8k:train", _Tower(), 2, "c0ffee")}) == 5


def test_source_kind_labels_without_paths():
    assert [source_kind(s) for s in ("flickr8k:d:dev", "flickr8k:d", "folder:/x/y", "a/b.csv", "p.TSV", "x.jsonl",
                                     "s/{00..09}.tar", "https://h/s/{0..3}.tar", "pipe:cat x.tar")] == \
        ["flickr8k_dev", "flickr8k", "folder", "csv", "tsv", "jsonl", "wds", "wds", "wds"]


def test_canonical_spec_keeps_urls_and_makes_local_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert canonical_spec("pairs.csv") == os.path.join(str(tmp_path), "pairs.csv")
    assert canonical_spec("shards/{00000..00009}.tar") == f"{tmp_path}/shards/{{00000..00009}}.tar"
    assert canonical_spec("https://host/shards/{0..3}.tar") == "https://host/shards/{0..3}.tar"
    assert canonical_spec("flickr8k:f8k") == f"flickr8k:{tmp_path}/f8k"
    assert canonical_spec("flickr8k:f8k:test") == f"flickr8k:{tmp_path}/f8k:test"
    assert canonical_spec("folder:/data/flowers/test") == "folder:/data/flowers/test"  # already absolute
    assert canonical_spec("folder:flowers") == f"folder:{tmp_path}/flowers"


def test_content_fingerprint_sees_keys_sizes_and_captions_not_order_or_paths(tmp_path):
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    a.write_bytes(b"x" * 10)
    b.write_bytes(b"y" * 20)
    items = [ImageItem("a.jpg", str(a), ["one", "two"]), ImageItem("b.jpg", str(b), ["three"])]
    fp = content_fingerprint(items)
    assert len(fp) == 64 and fp == content_fingerprint(items[::-1])  # rows reordered: the same data
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(a, moved / "a.jpg")
    assert content_fingerprint([ImageItem("a.jpg", str(moved / "a.jpg"), ["one", "two"]), items[1]]) == fp
    changed = [
        [ImageItem("a.jpg", str(a), ["one", "TWO"]), items[1]],  # a caption
        [ImageItem("a.jpg", str(a), ["two", "one"]), items[1]],  # caption order (text rows follow it)
        [ImageItem("c.jpg", str(a), ["one", "two"]), items[1]],  # a key
        items + [ImageItem("d.jpg", str(tmp_path / "missing.jpg"), [])],  # an added (here missing) image
        [ImageItem("a.jpg", str(b), ["one", "two"]), items[1]],  # a file of another size
        [ImageItem("a.jpg", b"x" * 11, ["one", "two"]), items[1]],  # bytes (WebDataset): their length
    ]
    assert len({fp, *(content_fingerprint(c) for c in changed)}) == len(changed) + 1


@pytest.fixture()
def spelled(tmp_path, monkeypatch):
    """One folder of 12 images reached three ways: ``../data/photos`` from a working folder beside it,
    its absolute path, and a symlink to it elsewhere."""
    data = tmp_path / "data" / "photos"
    make_images(data, 12)
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "links").mkdir()
    link = tmp_path / "links" / "my_photos"
    link.symlink_to(data, target_is_directory=True)
    monkeypatch.chdir(work)
    return {"relative": "folder:../data/photos", "absolute": f"folder:{data}", "symlink": f"folder:{link}"}


def test_three_spellings_of_one_folder_find_one_cache(spelled, tmp_path, tower, monkeypatch):
    root = tmp_path / "caches"
    first = ensure_cache(spelled["relative"], tower, cache_root=root, opts=_opts())
    assert [p.name for p in root.iterdir()] == [first.folder.name] and first.folder.name.startswith("folder-")
    m = first.manifest
    assert m.source == f"folder:{tmp_path / 'data' / 'photos'}"  # the path, absolute, as information
    assert m.content == content_fingerprint(load_items(spelled["absolute"])[0])

    calls = []
    monkeypatch.setattr(writer, "_embed_shard", lambda *a, **k: calls.append(a) or pytest.fail("embedded again"))
    for how in ("absolute", "symlink", "relative"):
        again = ensure_cache(spelled[how], tower, cache_root=root, opts=_opts())
        assert again.folder == first.folder, how
    assert calls == [] and len(list(root.iterdir())) == 1


def test_changed_data_gets_another_automatic_cache_and_a_named_one_is_refused(tmp_path, tower):
    folder = tmp_path / "data"
    rows = [(f"images/{n}", c) for n, c in make_images(folder / "images", 10)]
    csv = write_csv(folder / "data.csv", rows)
    root = tmp_path / "caches"
    old = ensure_cache(str(csv), tower, cache_root=root, opts=_opts())
    named = tmp_path / "named"
    ensure_cache(str(csv), tower, named, _opts())

    edits = {
        "caption": lambda: write_csv(csv, rows[:-1] + [(rows[-1][0], "an edited caption")]),
        "n_items": lambda: (make_images(folder / "more", 1, seed=3),
                            write_csv(csv, rows + [("more/img_000.jpg", "red above green")])),
        "content fingerprint": lambda: (write_csv(csv, rows),  # same rows, one image re-encoded
                                        Image.open(folder / rows[0][0]).save(folder / rows[0][0], quality=30)),
    }
    seen = {old.folder}
    for what, edit in edits.items():
        edit()
        new = ensure_cache(str(csv), tower, cache_root=root, opts=_opts())
        assert new.folder not in seen, what  # the edited data: a cache of its own...
        seen.add(new.folder)
        assert EmbeddingCache(old.folder).manifest.complete  # ...and the old one is left as it was
        with pytest.raises(CacheMismatch, match=what) as e:  # a folder the user named: refused
            ensure_cache(str(csv), tower, named, _opts())
        assert str(named) in str(e.value) and "new folder" in str(e.value)
    assert len(list(root.iterdir())) == 4


def test_image_paths_open_from_any_working_folder(spelled, tmp_path, tower, monkeypatch):
    """A clip-retrieval-style reader, run from another folder, opens every image_path of the metadata."""
    csv_dir = tmp_path / "pairs"
    make_images(csv_dir / "images", 9)
    write_csv(csv_dir / "pairs.csv", [(f"images/img_{i:03d}.jpg", f"caption {i}") for i in range(9)])
    out = tmp_path / "work" / "cache"
    for spec in (spelled["relative"], "../pairs/pairs.csv"):  # relative specs, run from work/
        if out.exists():
            shutil.rmtree(out)
        ensure_cache(spec, tower, "cache", _opts(shard_size=4))
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir(exist_ok=True)
        monkeypatch.chdir(elsewhere)
        paths = [p for f in sorted((out / "metadata").glob("*.parquet"))
                 for p in pq.read_table(f).column("image_path").to_pylist()]
        assert len(paths) == Manifest.read(out).count > 0
        for p in paths:
            assert os.path.isabs(p)
            with Image.open(p) as im:
                im.load()
        assert EmbeddingCache(out).image_paths == paths
        monkeypatch.chdir(tmp_path / "work")


def test_rerun_on_a_complete_cache_says_so(spelled, tmp_path, tower, capsys):
    out = tmp_path / "c"
    ensure_cache(spelled["absolute"], tower, out, _opts())
    capsys.readouterr()
    ensure_cache(spelled["symlink"], tower, out, _opts(progress=True))
    err = capsys.readouterr().err
    assert err == f"{out}: already complete (12 images)\n"  # one line, no progress bar
    ensure_cache(spelled["symlink"], tower, out, _opts())
    assert capsys.readouterr().err == ""  # progress off: silent
