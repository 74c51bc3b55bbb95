"""Training on two caches (both towers locked): heads, latent mixup and warm starts."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from littune.cache.text import TextEmbedOptions, embed_texts
from littune.cache import EmbeddingCache
from littune.config import ConfigError
from littune.train import Trainer, load_config
from littune.train import loop as loop_module
from littune.train.step import mix_pairs, mixup_draw

from tests.cache.text_tower import save_tiny_bert
from tests.cache.tiny_data import TOWER, make_dataset


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tower_weights):
    root = tmp_path_factory.mktemp("two_caches")
    return {"root": root, "train": make_dataset(root / "data", 32), "bert": save_tiny_bert(root / "bert"),
            "weights": tower_weights}


def _cfg(s, out, steps=3, *extra):
    return load_config(None, [
        f"model.image.name={TOWER}", "model.image.pretrained=false", f"model.image.checkpoint={s['weights']}",
        f"model.text.name=hf:{s['bert']}", "model.text.lock=L", "model.text.context_length=16",
        f"data.train={s['train']}", f"data.cache_root={s['root'] / 'cache'}", "data.num_workers=0", "data.engine=torch",
        f"train.out_dir={out}", f"train.steps={steps}", "train.batch_size=8", "train.log_every=1",
        "train.ckpt_every=0", "train.progress=false", "optim.warmup_steps=1", *extra])


def _grads(trainer, batch):
    trainer.train_step(batch)  # zero_grad, forward, backward, clip, step
    return {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}


def test_a_step_on_two_caches_equals_the_same_step_computed_live(setup, tmp_path):
    cached = Trainer(_cfg(setup, tmp_path / "cached"))
    assert cached.text_cached and (tmp_path / "cached" / "text_cache_manifest.json").is_file()
    live = Trainer(_cfg(setup, tmp_path / "live", 3, "data.use_text_cache=false"))
    assert not live.text_cached
    # A float32 text cache, so the two paths see the same features up to summation order.
    texts = [c for caps in cached.batches.captions for c in caps]
    f32 = embed_texts(texts, cached.model.text, tmp_path / "tc32", TextEmbedOptions(dtype="float32", engine="torch",
                                                                                      progress=False))
    cached.batches.text_cache = f32
    batch = cached.batches(0)
    assert batch["text_features"].shape == (8, 32)
    live_batch = {k: v for k, v in batch.items() if k != "text_features"}
    g_cached, g_live = _grads(cached, batch), _grads(live, live_batch)
    assert set(g_cached) == set(g_live) and g_cached  # the heads (and temperature) get gradients either way
    for name in g_live:
        torch.testing.assert_close(g_cached[name], g_live[name], rtol=1e-4, atol=1e-6)
    for (n, a), b in zip(cached.model.named_parameters(), live.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=n)


def test_mixup_with_coefficient_one_equals_no_mixup(setup, tmp_path, monkeypatch):
    x = torch.randn(6, 4)
    assert torch.equal(mix_pairs(x, torch.ones(6, 1), torch.randperm(6)), x)
    lam, perm = mixup_draw(0.4, 8, seed=3, step=5)
    assert lam.shape == (8, 1) and ((lam >= 0) & (lam <= 1)).all() and sorted(perm.tolist()) == list(range(8))
    assert all(torch.equal(a, b) for a, b in zip((lam, perm), mixup_draw(0.4, 8, seed=3, step=5)))  # replayable
    assert not torch.equal(lam, mixup_draw(0.4, 8, seed=3, step=6)[0])
    plain = Trainer(_cfg(setup, tmp_path / "plain")).fit()
    monkeypatch.setattr(loop_module, "mixup_draw", lambda a, n, *args: (torch.ones(n, 1), torch.randperm(n)))
    ones = Trainer(_cfg(setup, tmp_path / "ones", 3, "train.mixup=0.4")).fit()
    assert ones["fingerprints"]["model"] == plain["fingerprints"]["model"]
    monkeypatch.undo()
    mixed = Trainer(_cfg(setup, tmp_path / "mixed", 3, "train.mixup=0.4")).fit()
    assert mixed["fingerprints"]["model"] != plain["fingerprints"]["model"]


def test_mixup_refuses_the_gradient_cache(setup, tmp_path):
    with pytest.raises(ConfigError, match="grad_cache_chunk"):
        Trainer(_cfg(setup, tmp_path / "r", 3, "train.mixup=0.4", "train.grad_cache_chunk=4"))


def test_warm_start_loads_exactly_the_parts_it_names(setup, tmp_path):
    heads = ["model.image.head=linear", "model.embed_dim=24", "model.text.head=mlp"]
    src = tmp_path / "src"
    Trainer(_cfg(setup, src, 3, *heads)).fit()
    saved = load_file(str(src / "model.safetensors"))
    fresh = Trainer(_cfg(setup, tmp_path / "fresh", 3, *heads)).model.state_dict()
    warm = Trainer(_cfg(setup, tmp_path / "warm", 3, *heads, f"train.init_from={src}", "train.init_parts=[text_head]"))
    assert set(warm.warm_started) == {"text_head"}
    state = warm.model.state_dict()
    for k in state:
        if k.startswith("text_head."):
            assert torch.equal(state[k], saved[k]) and not torch.equal(saved[k], fresh[k]), k
        elif k.startswith("image_head.") or k == "logit_scale":
            assert torch.equal(state[k], fresh[k]), k  # not named: this run's own initialisation
    default = Trainer(_cfg(setup, tmp_path / "default", 3, *heads, f"train.init_from={src}"))
    assert set(default.warm_started) == {"image_head", "text_head", "logit_scale", "logit_bias"}
    assert torch.equal(default.model.logit_scale.detach(), saved["logit_scale"])


def test_warm_start_refuses_other_towers_and_sizes(setup, tmp_path, other_tower_weights):
    src = tmp_path / "src"
    Trainer(_cfg(setup, src, 2)).fit()
    other = {**setup, "weights": other_tower_weights}
    with pytest.raises(ConfigError, match="its image tower differs"):
        Trainer(_cfg(other, tmp_path / "a", 2, f"train.init_from={src}"))
    with pytest.raises(ConfigError, match="another embedding size"):
        Trainer(_cfg(setup, tmp_path / "b", 2, "model.image.head=linear", "model.embed_dim=24",
                     f"train.init_from={src}", "train.init_parts=[text_head]"))
    with pytest.raises(ConfigError, match="init_parts.*choose from"):
        Trainer(_cfg(setup, tmp_path / "c", 2, f"train.init_from={src}", "train.init_parts=[text_heads]"))
    with pytest.raises(ConfigError, match="not a finished littune run"):
        Trainer(_cfg(setup, tmp_path / "d", 2, f"train.init_from={tmp_path}"))
