"""The two-tower LiT model: embeddings, temperature, heads, cached-feature path, config build."""
from __future__ import annotations

import math

import pytest
import torch

from littune.losses import create_loss
from littune.model import LiTModel, ModelConfig
from littune.towers import create_image_tower, create_text_tower, train_tokenizer, wrap_tokenizer
from littune.towers.config import ImageTowerConfig, TextTowerConfig

CAPTIONS = ["a dog runs on the grass", "a cat sleeps on a sofa", "two people ride bikes", "a red car"]


@pytest.fixture(scope="module")
def tok():
    return wrap_tokenizer(train_tokenizer(CAPTIONS * 4, vocab_size=80), context_length=10)


@pytest.fixture(scope="module")
def image_tower():
    torch.manual_seed(0)
    return create_image_tower("timm:test_resnet", pretrained=False, lock="L")


def _text(tok):
    torch.manual_seed(1)
    return create_text_tower("scratch", tokenizer=tok, width=24, depth=1, heads=2, lock="u")


def test_forward_outputs_are_normalised_and_paired(tok, image_tower):
    model = LiTModel(image_tower, _text(tok))
    assert model.embed_dim == 96 and isinstance(model.image_head, torch.nn.Identity)
    tokens = tok(CAPTIONS)
    out = model(tokens, pixels=torch.randn(4, 3, 32, 32))
    assert out["image_emb"].shape == out["text_emb"].shape == (4, 96)
    for key in ("image_emb", "text_emb"):
        torch.testing.assert_close(out[key].norm(dim=-1), torch.ones(4))
    assert out["logit_scale"].item() == pytest.approx(10.0, rel=1e-6)
    assert out["logit_bias"].item() == pytest.approx(-10.0)
    assert model.temperature == pytest.approx(10.0, rel=1e-6)
    assert model.logit_scale.item() == pytest.approx(math.log(10.0)) and model.logit_scale.requires_grad


def test_pixels_and_cached_features_give_the_same_embeddings(tok, image_tower):
    model = LiTModel(image_tower, _text(tok), image_head="linear", embed_dim=16).eval()
    pixels = torch.randn(3, 3, 32, 32)
    tokens = tok(CAPTIONS[:3])
    features = model.image_features(pixels)
    assert features.shape == (3, 96)
    a = model(tokens, pixels=pixels)
    b = model(tokens, image_features=features)
    torch.testing.assert_close(a["image_emb"], b["image_emb"], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(a["text_emb"], b["text_emb"])
    torch.testing.assert_close(model.encode_image(pixels), a["image_emb"])
    # Half-precision cached features are accepted (computed in float32).
    torch.testing.assert_close(model.encode_image_features(features.half()), a["image_emb"], rtol=2e-3, atol=2e-3)
    with pytest.raises(ValueError, match="exactly one"):
        model(tokens)
    with pytest.raises(ValueError, match="exactly one"):
        model(tokens, pixels=pixels, image_features=features)


def test_linear_image_head_and_embed_dim(tok, image_tower):
    model = LiTModel(image_tower, _text(tok), image_head="linear", embed_dim=16)
    assert isinstance(model.image_head, torch.nn.Linear)
    assert (model.image_head.in_features, model.image_head.out_features) == (96, 16)
    assert (model.text_head.in_features, model.text_head.out_features) == (24, 16)
    out = model(tok(CAPTIONS), image_features=torch.randn(4, 96))
    assert out["image_emb"].shape == out["text_emb"].shape == (4, 16)
    loss = create_loss("softmax")(out["image_emb"], out["text_emb"], out["logit_scale"])
    loss.backward()
    assert model.image_head.weight.grad.abs().sum() > 0 and model.logit_scale.grad is not None
    assert not any(p.requires_grad for p in model.image.parameters())

    with pytest.raises(ValueError, match="head=none needs equal sizes"):
        LiTModel(image_tower, _text(tok), embed_dim=16)
    with pytest.raises(ValueError, match="image head='attention' is not a head"):
        LiTModel(image_tower, _text(tok), image_head="attention")


def test_temperature_options(tok, image_tower):
    model = LiTModel(image_tower, _text(tok), init_temperature=30.0, learn_temperature=False, init_bias=-5.0)
    assert model.temperature == pytest.approx(30.0, rel=1e-6)
    assert not model.logit_scale.requires_grad and model.logit_bias.item() == -5.0


def test_sigmoid_loss_trains_bias_through_the_model(tok, image_tower):
    model = LiTModel(image_tower, _text(tok))
    out = model(tok(CAPTIONS), pixels=torch.randn(4, 3, 32, 32))
    create_loss("sigmoid")(out["image_emb"], out["text_emb"], out["logit_scale"], out["logit_bias"]).backward()
    assert model.logit_bias.grad.abs() > 0 and model.logit_scale.grad.abs() > 0
    assert model.text_head.weight.grad.abs().sum() > 0
    assert model.text.token_emb.weight.grad.abs().sum() > 0


def test_model_config_builds_both_towers(tok):
    cfg = ModelConfig(
        image=ImageTowerConfig(name="timm:test_resnet", pretrained=False, lock="L", head="linear"),
        text=TextTowerConfig(name="scratch", lock="u", width=24, depth=1, heads=2, context_length=10),
        embed_dim=32,
    )
    model = cfg.build(tokenizer=tok)
    assert model.image.locked and model.text.lock_mode == "u" and model.embed_dim == 32
    assert model.text.tokenizer is tok
    d = model.describe()
    assert d["image"]["lock"] == "L" and d["image"]["trainable_params"] == 0
    assert d["text"]["embed_dim"] == 24 and d["temperature"] == pytest.approx(10.0, rel=1e-6)
    assert set(d["fingerprints"]) == {"image", "text", "image_head", "text_head", "logit_scale", "logit_bias", "model"}
    # A tower built elsewhere (e.g. shared with the cache) can be passed in.
    tower = create_image_tower("timm:test_resnet", pretrained=False)
    assert cfg.build(image_tower=tower, tokenizer=tok).image is tower
