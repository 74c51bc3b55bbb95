"""Engines for locked towers (towers/engine.py): the same features as the fp32 torch forward."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from littune.cache import EmbedOptions, EmbeddingCache, embed
from littune.data.images import load_image
from littune.towers import create_image_tower, create_text_tower
from littune.towers import engine as engines


@pytest.fixture(scope="module")
def lite0():
    return create_image_tower("efficientnet_lite0", lock="L")


@pytest.fixture(scope="module")
def photos(shared_data) -> list[str]:
    """Real photos: four flowers of each class and eight Flickr8k pictures."""
    out = []
    for cls in sorted(os.listdir(shared_data / "flowers" / "test")):
        out += [str(p) for p in sorted((shared_data / "flowers" / "test" / cls).iterdir())[:4]]
    return out + [str(p) for p in sorted((shared_data / "flickr8k" / "images").iterdir())[:8]]


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("name", ["openvino", "onnx"])
def test_image_engine_matches_torch_fp32_on_real_photos(lite0, photos, name):
    pre = lite0.preprocess
    pixels = torch.stack([pre.pil_transform()(load_image(p)) for p in photos])  # uint8 (N, 3, 224, 224)
    with torch.inference_mode():
        ref = lite0(torch.stack([pre.transform()(load_image(p)) for p in photos])).numpy()  # today's path
    got = engines.image_engine(lite0, name, threads=1)(pixels.numpy())
    assert got.shape == ref.shape == (len(photos), 1280) and got.dtype == np.float32
    assert _cosine(got, ref).min() >= 0.999  # the bar, per image
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3)  # in fact far closer than that


def test_torch_engine_is_the_towers_forward_bit_for_bit(lite0, photos):
    pre = lite0.preprocess
    pixels = torch.stack([pre.pil_transform()(load_image(p)) for p in photos[:6]])
    with torch.inference_mode():
        ref = lite0(torch.stack([pre.transform()(load_image(p)) for p in photos[:6]])).numpy()
    assert np.array_equal(engines.image_engine(lite0, "torch")(pixels.numpy()), ref)


def test_text_engine_matches_torch_and_converts_quietly(capfd, monkeypatch):
    from transformers.utils import logging as hf_logging

    monkeypatch.setattr(engines, "_COMPILED", type(engines._COMPILED)())  # convert here, not reuse one

    tower = create_text_tower("minilm", lock="L", context_length=32)
    texts = ["a dog runs across the grass", "two children play in a fountain .", "a photo of a tulip."]
    tok = tower.tokenizer(texts)
    with torch.inference_mode():
        ref = tower(tok).numpy()
    hf_logging.warning_once.cache_clear()  # transformers says each warning once per process
    capfd.readouterr()
    got = engines.text_engine(tower, "openvino", threads=1)(tok["input_ids"].numpy(), tok["attention_mask"].numpy())
    assert _cosine(got, ref).min() >= 0.9999
    # tracing probes every attribute; transformers' warnings about them are not the user's business
    assert "loss_type" not in capfd.readouterr().err


def test_cache_records_its_engine_and_engines_share_caches(tmp_path, lite0, photos):
    csv = tmp_path / "pairs.csv"
    csv.write_text("image,caption\n" + "".join(f"{p},photo {i}\n" for i, p in enumerate(photos[:10])))
    opts = dict(shard_size=4, batch_size=4, num_workers=0, progress=False, dtype="float32")
    m_ov = embed(str(csv), lite0, tmp_path / "ov", EmbedOptions(engine="openvino", **opts))
    m_t = embed(str(csv), lite0, tmp_path / "t", EmbedOptions(engine="torch", **opts))
    assert (m_ov.engine, m_t.engine) == ("openvino", "torch")
    assert json.loads((tmp_path / "ov" / "manifest.json").read_text())["engine"] == "openvino"
    a, b = EmbeddingCache(tmp_path / "ov"), EmbeddingCache(tmp_path / "t")
    a.check(lite0), b.check(lite0)  # both are caches of this tower: the engine is not part of its identity
    assert _cosine(a.all().numpy(), b.all().numpy()).min() >= 0.999


def test_engine_errors_name_the_fix(lite0, monkeypatch):
    with pytest.raises(KeyError, match="Unknown engine 'openvin'.*Did you mean 'openvino'"):
        engines.resolve_engine("openvin")
    monkeypatch.setattr(engines, "available", lambda name: name == "torch")
    with pytest.raises(engines.EngineUnavailable, match="pip install openvino.*--engine torch"):
        engines.resolve_engine("openvino")
    assert engines.resolve_engine("auto") == "torch"  # auto falls back; torch always works


def test_a_disagreeing_engine_is_refused(lite0, monkeypatch):
    real = engines.ENGINES.resolve("openvino")[0].factory

    def broken(module, example, threads, precision="fp32"):
        run = real(module, example, threads)
        return lambda *x: run(*x)[:, ::-1].copy()  # features in the wrong order
    monkeypatch.setattr(engines.ENGINES.resolve("openvino")[0], "target", broken)
    pixels = np.zeros((2, 3, 224, 224), np.uint8)
    pixels[1] = 200
    with pytest.raises(engines.EngineMismatch, match="disagrees with torch"):
        engines.image_engine(lite0, "openvino", threads=1)(pixels)


def test_a_process_converts_each_locked_tower_once(tmp_path, monkeypatch):
    """The demo runs one locked tower over five data sets, each from a fresh tower object: one conversion."""
    from tests.cache.tiny_data import load_tower, save_tower_weights

    entry = engines.ENGINES.resolve("openvino")[0]
    real, calls = entry.factory, []

    def counting(module, example, threads, precision="fp32"):
        calls.append(type(module).__name__)
        return real(module, example, threads)
    monkeypatch.setattr(entry, "target", counting)
    weights = save_tower_weights(tmp_path / "a.safetensors", seed=0)
    first, second = load_tower(weights), load_tower(weights)  # two objects, the same weights
    s = first.preprocess.input_size
    pixels = np.random.default_rng(0).integers(0, 256, (3, 3, s, s), dtype=np.uint8)
    a = engines.image_engine(first, "openvino", threads=1)(pixels)
    b = engines.image_engine(second, "openvino", threads=1)(pixels)
    assert calls == ["_Pixels"] and np.array_equal(a, b)
    other = load_tower(save_tower_weights(tmp_path / "b.safetensors", seed=1))  # other weights: its own
    c = engines.image_engine(other, "openvino", threads=1)(pixels)  # (checked against its own torch forward)
    assert calls == ["_Pixels", "_Pixels"] and not np.allclose(a, c)
