"""The gradient cache (train/step.py) against the plain step, with dropout on and uneven chunks.

With dropout, the cache is only right if each chunk's second forward draws the masks of its first
(the RNG state is replayed per chunk): the reference below embeds the texts chunk by chunk in one
graph, drawing the masks in the same order, and the gradients must match it. Without the replay they
do not (checked too, so this test can fail)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import littune.train.step as step
from littune.heads import make_head
from littune.losses import create_loss
from littune.model import LiTModel
from littune.towers import create_image_tower, create_text_tower
from littune.train import Trainer, load_config
from littune.train.step import StepForward, grad_cache_step

from tests.cache.tiny_data import make_cache, model_overrides

B = 10  # with chunks of 3 or 4: 3+3+3+1 and 4+4+2, the last chunk short


def _model(dropout: float = 0.2) -> LiTModel:
    torch.manual_seed(0)
    image = create_image_tower("timm:test_efficientnet", pretrained=False, lock="L")
    text = create_text_tower("scratch", lock="u", width=32, depth=2, heads=2, context_length=16, dropout=dropout)
    head = make_head("mlp", image.embed_dim, 16, hidden=24, dropout=0.1)  # the image side draws masks too
    return LiTModel(image, text, image_head=head, embed_dim=16).train()


def _batch(model: LiTModel):
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(B, model.image.embed_dim, generator=g)
    tokens = model.tokenize([f"photo {i} of {'a dog ' * (1 + i % 4)}" for i in range(B)])
    return tokens, feats


def _grads(model: LiTModel) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _reference(model, loss_fn, tokens, feats, chunk: int):
    """One graph over the whole batch; the texts embedded chunk by chunk, as the cache draws their masks."""
    model.zero_grad(set_to_none=True)
    parts = [model.encode_text({k: v[i:i + chunk] for k, v in tokens.items()}) for i in range(0, B, chunk)]
    img = model.encode_image_features(feats)
    loss = loss_fn(img, torch.cat(parts), model.logit_scale.exp(), model.logit_bias)
    loss.backward()
    return loss.detach(), _grads(model), torch.get_rng_state()


def _cached(model, loss_fn, tokens, feats, chunk: int):
    model.zero_grad(set_to_none=True)
    loss = grad_cache_step(StepForward(model), loss_fn, tokens, {"image_features": feats}, chunk, False)
    return loss, _grads(model), torch.get_rng_state()


@pytest.mark.parametrize("loss_name", ["softmax", "sigmoid"])
@pytest.mark.parametrize("chunk", [3, 4])
def test_gradient_cache_replays_dropout_masks(loss_name, chunk):
    model = _model()
    loss_fn = create_loss(loss_name)
    model.logit_bias.requires_grad_(loss_fn.uses_bias)
    tokens, feats = _batch(model)
    torch.manual_seed(7)
    ref_loss, ref, ref_rng = _reference(model, loss_fn, tokens, feats, chunk)
    torch.manual_seed(7)
    loss, got, rng = _cached(model, loss_fn, tokens, feats, chunk)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-6)
    assert set(got) == set(ref) and any(n.startswith("text.blocks") for n in got) and "image_head.0.weight" in got
    for name, g in ref.items():
        assert g.abs().sum() > 0, name
        torch.testing.assert_close(got[name], g, rtol=1e-5, atol=1e-7, msg=name)
    assert torch.equal(rng, ref_rng)  # the trainer's random stream ends where a plain forward leaves it

    # Dropout is really on: another draw of the masks gives other gradients...
    torch.manual_seed(8)
    _, other, _ = _cached(model, loss_fn, tokens, feats, chunk)
    assert not torch.allclose(other["text.token_emb.weight"], ref["text.token_emb.weight"], rtol=1e-3)


def test_without_the_replay_the_gradients_are_wrong(monkeypatch):
    """The proof above can fail: with the per-chunk RNG replay switched off, it does."""
    model = _model()
    loss_fn = create_loss("softmax")
    model.logit_bias.requires_grad_(False)
    tokens, feats = _batch(model)
    torch.manual_seed(7)
    _, ref, _ = _reference(model, loss_fn, tokens, feats, 3)
    monkeypatch.setattr(step, "_set_rng_state", lambda state: None)
    torch.manual_seed(7)
    _, got, _ = _cached(model, loss_fn, tokens, feats, 3)
    worst = max(float((got[n] - g).abs().max() / g.abs().max()) for n, g in ref.items())
    assert worst > 1e-2


@pytest.fixture(scope="module")
def cache(tmp_path_factory, tower_weights) -> Path:
    return make_cache(tmp_path_factory.mktemp("grad_cache_data"), 32, tower_weights)


def _train(tmp_path: Path, cache: Path, weights: Path, tokenizer: Path, name: str, *extra: str) -> dict:
    cfg = load_config(None, model_overrides(weights, tokenizer=tokenizer) + [
        f"data.train_cache={cache}", f"train.out_dir={tmp_path / name}", "train.steps=8", "train.batch_size=10",
        "train.log_every=1", "train.ckpt_every=0", "train.progress=false", "train.threads=1",
        "optim.warmup_steps=2", "optim.lr=3e-3", *extra])
    trainer = Trainer(cfg)
    trainer.fit()
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters()}


def test_trainer_with_and_without_the_gradient_cache(tmp_path, cache, tower_weights, tokenizer_file):
    plain = _train(tmp_path, cache, tower_weights, tokenizer_file, "plain")
    chunked = _train(tmp_path, cache, tower_weights, tokenizer_file, "chunked", "train.grad_cache_chunk=3")
    assert plain.keys() == chunked.keys()
    for name, w in plain.items():  # no dropout: the same gradients up to summation order, 8 steps on
        torch.testing.assert_close(chunked[name], w, rtol=1e-4, atol=1e-5, msg=name)
    # With dropout the masks are drawn per chunk (others than the plain step's), but the run is exact:
    a = _train(tmp_path, cache, tower_weights, tokenizer_file, "drop_a", "train.grad_cache_chunk=3",
                  "model.text.dropout=0.2")
    b = _train(tmp_path, cache, tower_weights, tokenizer_file, "drop_b", "train.grad_cache_chunk=3",
                  "model.text.dropout=0.2")
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert any(not np.allclose(a[n].numpy(), chunked[n].numpy(), rtol=1e-3) for n in a)  # dropout did act
