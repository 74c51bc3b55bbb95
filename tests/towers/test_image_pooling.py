"""Image pooling ``cls_mean`` (dino.txt, arXiv 2412.16334): concat(final class token, mean of the final
patch tokens), checked by hand against each model's own token outputs; refused where there is no class
token; a cache made with one pooling is never taken for the other."""
from __future__ import annotations

import pytest
import torch

from littune.cache.manifest import CacheMismatch, Manifest
from littune.cache.naming import auto_cache_dir
from littune.towers import create_image_tower
from littune.towers.config import ImageTowerConfig


def _pair(name: str, **kw):
    """The same random weights built with both poolings."""
    torch.manual_seed(0)
    default = create_image_tower(name, pretrained=False, **kw)
    torch.manual_seed(0)
    pooled = create_image_tower(name, pretrained=False, pooling="cls_mean", **kw)
    assert pooled.fingerprint() == default.fingerprint()
    return default, pooled


@pytest.mark.parametrize("reg_tokens", [0, 2])
def test_timm_vit_cls_mean_is_class_token_and_mean_of_patches(reg_tokens):
    default, tower = _pair("timm:test_vit", img_size=32, reg_tokens=reg_tokens)
    assert tower.name == "timm:test_vit+cls_mean" and tower.pooling == "cls_mean"
    assert tower.embed_dim == 2 * default.embed_dim == 128
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        tokens = tower.model.forward_features(pixels)  # (3, 1 + reg + 4 patches, 64), after the final norm
    assert tokens.shape == (3, 1 + reg_tokens + 4, 64)
    expected = torch.cat([tokens[:, 0], tokens[:, 1 + reg_tokens:].mean(dim=1)], dim=1)  # registers left out
    out = tower(pixels)
    assert out.shape == (3, 128)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out[:, :64], default(pixels))  # test_vit's own pooling is the class token
    assert tower.describe()["pooling"] == "cls_mean" and default.describe()["pooling"] == "default"


def test_hf_vit_and_dinov2_cls_mean_from_last_hidden_state(hf_image_dirs):
    for family, width in (("vit", 32), ("dinov2", 40)):
        name = f"hf:{hf_image_dirs[family]}"
        default = create_image_tower(name)
        tower = create_image_tower(name, pooling="cls_mean")
        assert tower.name == f"{name}+cls_mean" and tower.embed_dim == 2 * width
        pixels = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            hidden = tower.model(pixel_values=pixels).last_hidden_state  # (2, 1 + 16, D), final norm applied
        expected = torch.cat([hidden[:, 0], hidden[:, 1:].mean(dim=1)], dim=1)
        torch.testing.assert_close(tower(pixels), expected)
        torch.testing.assert_close(tower(pixels)[:, :width], default(pixels))  # the default is the class token


def test_hf_dinov2_with_registers_and_clip_cls_mean(tmp_path, hf_image_dirs):
    import transformers as tr

    torch.manual_seed(0)
    cfg = tr.Dinov2WithRegistersConfig(hidden_size=40, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2,
                                       image_size=32, patch_size=8, num_register_tokens=3)
    tr.Dinov2WithRegistersModel(cfg).save_pretrained(tmp_path / "dinoreg")
    tr.BitImageProcessor(size={"height": 32, "width": 32}, do_center_crop=False).save_pretrained(tmp_path / "dinoreg")
    tower = create_image_tower(f"hf:{tmp_path / 'dinoreg'}", pooling="cls_mean")
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        hidden = tower.model(pixel_values=pixels).last_hidden_state  # (2, 1 + 3 registers + 16, 40)
    assert hidden.shape[1] == 20
    torch.testing.assert_close(tower(pixels), torch.cat([hidden[:, 0], hidden[:, 4:].mean(dim=1)], dim=1))

    # CLIP keeps its final norm (post_layernorm) outside last_hidden_state: both halves get it.
    clip = create_image_tower(f"hf:{hf_image_dirs['clip']}", pooling="cls_mean")
    with torch.no_grad():
        out = clip.model(pixel_values=pixels)
        normed = clip.model.post_layernorm(out.last_hidden_state)
    torch.testing.assert_close(clip(pixels)[:, :24], out.pooler_output)
    torch.testing.assert_close(clip(pixels), torch.cat([normed[:, 0], normed[:, 1:].mean(dim=1)], dim=1))


def test_cls_mean_refused_without_a_class_token(hf_image_dirs):
    # Convolutional nets, a timm ViT whose one prefix token is a register (test_vit2), SigLIP (MAP head).
    for name, kw in [("efficientnet_lite0", {}), ("timm:test_resnet", {}), ("timm:test_vit2", {"img_size": 32}),
                     (f"hf:{hf_image_dirs['siglip']}", {}), (f"hf:{hf_image_dirs['resnet']}", {})]:
        with pytest.raises(ValueError, match=r"model\.image\.pooling='cls_mean' needs a ViT with a class token"):
            create_image_tower(name, pretrained=False, pooling="cls_mean", **kw)
    with pytest.raises(ValueError, match=r"model\.image\.pooling='avg' is not a pooling.*'cls_mean'"):
        create_image_tower("timm:test_vit", pretrained=False, pooling="avg")


def test_config_key_builds_the_doubled_tower():
    tower = ImageTowerConfig(name="timm:test_vit", lock="L", pretrained=False, pooling="cls_mean",
                             kwargs={"img_size": 32}).build()
    assert tower.embed_dim == 128 and tower(torch.randn(1, 3, 32, 32)).shape == (1, 128)


def test_a_cache_of_one_pooling_is_refused_for_the_other(tmp_path):
    default, pooled = _pair("timm:test_vit", img_size=32)
    made = Manifest(tower=default.name, fingerprint=default.fingerprint(), preprocess=default.preprocess.to_dict(),
                    embed_dim=default.embed_dim, dtype="float16", source="folder:x", shard_size=8)
    with pytest.raises(CacheMismatch, match=r"tower: cache has 'timm:test_vit', model has 'timm:test_vit\+cls_mean'"):
        made.check(pooled.name, pooled.fingerprint(), pooled.preprocess.to_dict(), pooled.embed_dim)
    # Same weights, same data: the automatic cache folders differ, so neither finds the other's.
    assert auto_cache_dir(str(tmp_path), "folder:x", default, 0) != auto_cache_dir(str(tmp_path), "folder:x", pooled, 0)
