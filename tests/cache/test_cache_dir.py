"""Automatic cache folders: one per data set, whatever the working folder says it is called."""
from __future__ import annotations

import os

from littune.cache.naming import auto_cache_dir, canonical_spec


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


def test_relative_and_absolute_specs_share_a_cache(tmp_path, monkeypatch):
    data = tmp_path / "data" / "flickr8k"
    data.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    a = auto_cache_dir(str(tmp_path / "c"), "flickr8k:data/flickr8k:train", _Tower(), 0)
    monkeypatch.chdir(data)
    b = auto_cache_dir(str(tmp_path / "c"), f"flickr8k:{data}:train", _Tower(), 0)
    c = auto_cache_dir(str(tmp_path / "c"), "flickr8k:.:train", _Tower(), 0)
    assert a == b == c
    # ...while another split, another tower's weights or preprocessing or another view count never share one.
    assert len({a, auto_cache_dir(str(tmp_path / "c"), "flickr8k:.:dev", _Tower(), 0),
                auto_cache_dir(str(tmp_path / "c"), "flickr8k:.:train", _Tower("other"), 0),
                auto_cache_dir(str(tmp_path / "c"), "flickr8k:.:train", _Tower(crop_pct=1.0), 0),
                auto_cache_dir(str(tmp_path / "c"), "flickr8k:.:train", _Tower(), 2)}) == 5


def test_canonical_spec_keeps_urls_and_makes_local_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert canonical_spec("pairs.csv") == os.path.join(str(tmp_path), "pairs.csv")
    assert canonical_spec("shards/{00000..00009}.tar") == f"{tmp_path}/shards/{{00000..00009}}.tar"
    assert canonical_spec("https://host/shards/{0..3}.tar") == "https://host/shards/{0..3}.tar"
    assert canonical_spec("flickr8k:f8k") == f"flickr8k:{tmp_path}/f8k"
    assert canonical_spec("flickr8k:f8k:test") == f"flickr8k:{tmp_path}/f8k:test"
    assert canonical_spec("folder:/data/flowers/test") == "folder:/data/flowers/test"  # already absolute
    assert canonical_spec("folder:flowers") == f"folder:{tmp_path}/flowers"
