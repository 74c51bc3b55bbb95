"""model.image.cache_precision: a locked image tower's caches computed in bf16 are recorded as such
(manifest, cache folder, the check against the tower), self-checked within the bf16 tolerance, and
never mixed with fp32 ones; fp32 caches keep their folders (towers/engine.py, cache/naming.py)."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from littune.cache import CacheMismatch, EmbedOptions, ensure_cache
from littune.cache.naming import auto_cache_dir
from littune.towers import engine as engines
from littune.towers.config import ImageMemberConfig, ImageTowerConfig

from .tiny_data import load_tower, make_dataset


def _tower(weights, precision="fp32"):
    tower = load_tower(weights)
    tower.cache_precision = precision
    return tower


def _opts(engine):
    return EmbedOptions(shard_size=8, batch_size=8, num_workers=0, progress=False, engine=engine, dtype="float32")


@pytest.mark.parametrize("engine", ["torch", "openvino"])
def test_bf16_cache_is_bf16_and_recorded(tmp_path, tower_weights, engine):
    if not engines.available(engine):
        pytest.skip(f"{engine} not installed")
    csv = str(make_dataset(tmp_path / "data", 12))
    fp32 = ensure_cache(csv, _tower(tower_weights), None, _opts(engine), cache_root=tmp_path / "c")
    bf16 = ensure_cache(csv, _tower(tower_weights, "bf16"), None, _opts(engine), cache_root=tmp_path / "c")
    assert fp32.folder != bf16.folder  # automatic folders differ by precision
    a, b = fp32.all().numpy(), bf16.all().numpy()
    rel = np.linalg.norm(b - a, axis=1) / np.linalg.norm(a, axis=1)
    assert rel.min() > engines.MAX_REL_DEVIATION * 2 and rel.max() < engines.MAX_REL_DEVIATION_BF16
    assert json.loads((bf16.folder / "manifest.json").read_text())["precision"] == "bf16"
    assert json.loads((fp32.folder / "manifest.json").read_text())["precision"] == "fp32"


def test_precisions_never_mix_and_fp32_folders_are_unchanged(tmp_path, tower_weights):
    csv = str(make_dataset(tmp_path / "data", 6))
    folder = tmp_path / "named"
    cache = ensure_cache(csv, _tower(tower_weights), folder, _opts("torch"))
    with pytest.raises(CacheMismatch, match="precision: cache has 'fp32', model has 'bf16'"):
        cache.check(_tower(tower_weights, "bf16"))
    with pytest.raises(CacheMismatch, match="precision: cache has 'fp32', model has 'bf16'"):
        ensure_cache(csv, _tower(tower_weights, "bf16"), folder, _opts("torch"))  # a folder the user named
    m = json.loads((folder / "manifest.json").read_text())
    del m["precision"]  # a manifest written before precisions were recorded reads as fp32
    (folder / "manifest.json").write_text(json.dumps(m))
    assert ensure_cache(csv, _tower(tower_weights), folder, _opts("torch")).all().shape[0] == 6
    t = _tower(tower_weights)
    pre = sorted(t.preprocess.to_dict().items())
    old = hashlib.sha1(f"abc|{t.name}|{t.fingerprint()}|{pre}|0".encode()).hexdigest()[:12]
    assert auto_cache_dir(tmp_path, "x.csv", t, 0, "abc").name.endswith(old)


def test_the_config_sets_it_on_the_whole_tower(monkeypatch):
    import littune.distributed as dist

    for native, want in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(dist, "native_bf16", lambda device, n=native: n)
        tower = ImageTowerConfig(name="efficientnet_lite0", pretrained=False, cache_precision="auto",
                                 concat=[ImageMemberConfig(name="efficientnet_lite0")]).build()
        assert type(tower).__name__ == "ConcatImageTower" and tower.cache_precision == want
    assert ImageTowerConfig(name="efficientnet_lite0", pretrained=False).build().cache_precision == "fp32"
