"""model.text.cache_precision: a locked text tower's caches computed in bf16 are another function,
recorded in the cache's identity (never mixed with fp32 ones), self-checked against torch fp32 within
the bf16 tolerance, and fp32 caches keep the folders they had (towers/engine.py, cache/text.py)."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from littune.cache import CacheMismatch
from littune.cache.text import TextEmbedOptions, embed_texts, ensure_text_cache, text_cache_dir
from littune.config.experiment import load_config, validate
from littune.config.loader import ConfigError
from littune.towers import create_text_tower
from littune.towers import engine as engines
from littune.towers.config import TextTowerConfig

from .test_text_cache import TEXTS
from .text_tower import save_tiny_bert


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("bert") / "bert", hidden=64)


def _tower(folder, precision="fp32"):
    tower = create_text_tower(f"hf:{folder}", lock="L", context_length=16)
    tower.cache_precision = precision
    return tower


def _opts(engine="torch"):
    return TextEmbedOptions(shard_size=16, batch_size=8, dtype="float32", engine=engine, progress=False)


def _rel(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return ((a - b).norm(dim=1) / b.norm(dim=1)).numpy()


@pytest.mark.parametrize("engine", ["torch", "openvino"])
def test_bf16_cache_is_bf16_not_fp32_and_within_its_tolerance(tmp_path, bert, engine):
    if not engines.available(engine):
        pytest.skip(f"{engine} not installed")
    fp32 = embed_texts(TEXTS, _tower(bert), tmp_path / "fp32", _opts(engine)).all()
    bf16 = embed_texts(TEXTS, _tower(bert, "bf16"), tmp_path / "bf16", _opts(engine)).all()
    rel = _rel(bf16, fp32)
    # really computed in bf16: every row moved past the fp32 engines' tolerance (they deviate by ~1e-6),
    # none past bf16's
    assert rel.min() > engines.MAX_REL_DEVIATION * 2
    assert rel.max() < engines.MAX_REL_DEVIATION_BF16
    m = json.loads((tmp_path / "bf16" / "manifest.json").read_text())
    assert (m["precision"], m["engine"]) == ("bf16", engine)
    assert json.loads((tmp_path / "fp32" / "manifest.json").read_text())["precision"] == "fp32"


def test_precisions_never_mix(tmp_path, bert):
    folder = tmp_path / "tc"
    cache = embed_texts(TEXTS, _tower(bert), folder, _opts())
    with pytest.raises(CacheMismatch, match="precision: cache has 'fp32', tower has 'bf16'"):
        cache.check(_tower(bert, "bf16"))
    with pytest.raises(CacheMismatch, match="precision: cache has 'fp32', tower has 'bf16'"):
        ensure_text_cache(TEXTS, _tower(bert, "bf16"), folder, _opts())  # an explicit data.text_cache folder
    # the automatic folders differ, and fp32's is the one it was before precisions were recorded
    image_cache = tmp_path / "images"
    a, b = text_cache_dir(image_cache, _tower(bert)), text_cache_dir(image_cache, _tower(bert, "bf16"))
    assert a != b and a.parent == b.parent
    t = _tower(bert)
    old = {"tower": t.name, "fingerprint": t.fingerprint(), "tokenizer": t.tokenizer.fingerprint(),
           "context_length": 16, "embed_dim": t.embed_dim}
    assert a.name.endswith(hashlib.sha1(json.dumps(old, sort_keys=True).encode()).hexdigest()[:10])


def test_a_manifest_from_before_precisions_reads_as_fp32(tmp_path, bert):
    folder = tmp_path / "tc"
    embed_texts(TEXTS, _tower(bert), folder, _opts())
    m = json.loads((folder / "manifest.json").read_text())
    del m["precision"]
    (folder / "manifest.json").write_text(json.dumps(m))
    cache = ensure_text_cache(TEXTS, _tower(bert), folder, _opts())  # no re-embed, no refusal
    assert cache.all().shape == (len(TEXTS), 64)
    with pytest.raises(CacheMismatch, match="precision"):
        cache.check(_tower(bert, "bf16"))


def test_bf16_engine_tolerance(monkeypatch):
    torch.manual_seed(0)
    module = torch.nn.Linear(16, 32)
    real = engines.ENGINES.resolve("torch")[0].factory

    def off_by(rel):
        def factory(module, example, threads, precision="fp32"):
            run = real(module, example, threads, precision="fp32")

            def out(*x):
                y = run(*x)
                noise = np.random.default_rng(0).normal(size=y.shape).astype(np.float32)
                return y + noise * rel * np.linalg.norm(y, axis=1, keepdims=True) / np.linalg.norm(noise, axis=1,
                                                                                                   keepdims=True)
            return out
        monkeypatch.setattr(engines.ENGINES.resolve("openvino")[0], "target", factory)
        engines._COMPILED.clear()
        return engines.Engine("openvino", module, (torch.zeros(2, 16),), precision="bf16")

    x = np.random.default_rng(1).normal(size=(6, 16)).astype(np.float32)
    assert off_by(8e-2)(x).shape == (6, 32)  # what bf16 moves EfficientNet-Lite0 by (measured: 8.4e-2 worst)
    with pytest.raises(engines.EngineMismatch, match=r"deviates by 3\.00e-01 .* > 1\.5e-01, the stated tolerance "
                                                     r"\(what bf16 rounding moves\)"):
        off_by(0.3)(x)


def test_onnx_refuses_bf16_and_unknown_precisions_are_named():
    module = torch.nn.Linear(4, 4)
    with pytest.raises(engines.EngineUnavailable, match="onnx' runs fp32 only, not bf16"):
        engines.ENGINES.resolve("onnx")[0].factory(module, (torch.zeros(2, 4),), None, precision="bf16")
    with pytest.raises(ValueError, match="engine precision 'fp16'"):
        engines.Engine("torch", module, (torch.zeros(2, 4),), precision="fp16")


def test_auto_follows_the_cpu(monkeypatch, bert):
    import littune.distributed as dist

    for native, want in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(dist, "native_bf16", lambda device, n=native: n)
        tower = TextTowerConfig(name=f"hf:{bert}", lock="L", cache_precision="auto", context_length=16).build()
        assert tower.cache_precision == want
    assert TextTowerConfig(name=f"hf:{bert}", lock="L", context_length=16).build().cache_precision == "fp32"
    # auto on a tower that trains is fp32: it fills no cache (monkeypatched: this CPU "has" bf16)
    monkeypatch.setattr(dist, "native_bf16", lambda device: True)
    live = TextTowerConfig(name=f"hf:{bert}", lock="U", cache_precision="auto", context_length=16).build()
    assert live.cache_precision == "fp32"


def _validate(*overrides):
    validate(load_config(None, ["data.train=x.csv", *overrides]))


def test_config_refusals_name_the_key():
    _validate("model.text.lock=L", "model.text.cache_precision=bf16")
    with pytest.raises(ConfigError, match=r"model.text.cache_precision='fp16' is not one of: fp32 .*bf16 .*auto"):
        _validate("model.text.lock=L", "model.text.cache_precision=fp16")
    with pytest.raises(ConfigError, match=r"model.text.cache_precision='bf16' is how a locked text tower fills its "
                                          r"caches; model.text.lock='U'"):
        _validate("model.text.lock=U", "model.text.cache_precision=bf16")
    _validate("model.image.lock=L", "model.image.cache_precision=auto")
    _validate("model.text.lock=U", "model.text.cache_precision=auto")  # the demo's config with its text tower tuned
    with pytest.raises(ConfigError, match=r"model.image.cache_precision='bf16' is how a locked image tower fills "
                                          r"its caches; model.image.lock='U'"):
        _validate("model.image.lock=U", "model.image.cache_precision=bf16")
    with pytest.raises(ConfigError, match=r"model.image.cache_precision='half' is not one of"):
        _validate("model.image.cache_precision=half")
