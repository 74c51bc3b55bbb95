"""Each tower sees the image as its authors define it: littune's pixels equal timm's eval transform and
transformers' image processors on a non-square image (towers/preprocess.py)."""
from __future__ import annotations

import pytest
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config

from littune.towers import Preprocess


def _photo(w: int = 320, h: int = 240) -> Image.Image:
    """A non-square 'photo': smooth colour fields plus fine noise (so resampling kernels matter)."""
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 8, generator=g), size=(h, w), mode="bilinear")[0]
    x = (smooth * 200 + torch.rand(3, h, w, generator=g) * 55).clamp(0, 255).to(torch.uint8)
    return Image.fromarray(x.permute(1, 2, 0).numpy())


def _ramp(w: int = 320, h: int = 240) -> Image.Image:
    """Black at the left edge to white at the right: shows how much of the width a view keeps."""
    row = torch.linspace(0, 255, w).round().to(torch.uint8)
    return Image.fromarray(row.expand(h, w).unsqueeze(-1).expand(h, w, 3).contiguous().numpy())


TIMM_CASES = {
    # name: (timm model, pretrained_cfg overlay): a real crop-0.9 ViT config, squash and border views
    "vit_crop_0.9": ("vit_tiny_patch16_224.augreg_in21k", {}),
    "squash": ("vit_tiny_patch16_224", {"crop_mode": "squash", "crop_pct": 0.9, "interpolation": "bilinear"}),
    "border": ("vit_tiny_patch16_224", {"crop_mode": "border", "crop_pct": 0.95, "mean": (0.2, 0.4, 0.6)}),
}


@pytest.mark.parametrize("case", sorted(TIMM_CASES))
def test_timm_eval_transform_is_reproduced(case):
    name, overlay = TIMM_CASES[case]
    model = timm.create_model(name, pretrained=False, pretrained_cfg_overlay=overlay, depth=1)
    cfg = resolve_data_config({}, model=model)
    want = create_transform(**cfg)
    pre = Preprocess.from_timm(model)
    assert pre.resize_mode == {"vit_crop_0.9": "shortest"}.get(case, case)
    for img in (_photo(), _photo(240, 320)):  # landscape and portrait
        torch.testing.assert_close(pre.transform()(img), want(img), atol=0, rtol=0)


def test_timm_floors_the_resize_size():
    # timm: floor(224 / 0.9) = 248 (rounding gave 249 and shifted every pixel of such towers)
    model = timm.create_model("vit_tiny_patch16_224.augreg_in21k", pretrained=False, depth=1)
    assert Preprocess.from_timm(model).resize_size == 248


def test_border_pads_with_the_mean_colour():
    pre = Preprocess(input_size=32, crop_pct=1.0, resize_mode="border", mean=(0.2, 0.4, 0.6), std=(0.5, 0.5, 0.5))
    px = pre.pil_transform()(Image.new("RGB", (64, 32), (255, 255, 255)))  # 2:1 -> 32 x 16, padded to 32 x 32
    assert px.shape == (3, 32, 32)
    assert px[:, 16].tolist() == [[255] * 32] * 3  # the image, centred
    assert px[:, 0, 0].tolist() == [51, 102, 153] and px[:, -1, -1].tolist() == [51, 102, 153]


def _hf_pixels(processor, img):
    return processor(images=img, return_tensors="pt")["pixel_values"][0]


def _hf_processors():
    import transformers as tr

    return {
        "vit": tr.ViTImageProcessor(),  # 224 x 224, bilinear: squash
        "siglip": tr.SiglipImageProcessor(),  # 224 x 224, bicubic: squash
        "convnext_224": tr.ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=0.875),  # 256, crop
        "convnext_384": tr.ConvNextImageProcessor(size={"shortest_edge": 384}),  # squash, no crop
        "clip_like": tr.ViTImageProcessor(size={"height": 250, "width": 250}, do_center_crop=True,
                                          crop_size={"height": 224, "width": 224}),
    }


@pytest.mark.parametrize("name", ["vit", "siglip", "convnext_224", "convnext_384", "clip_like"])
def test_transformers_processors_are_reproduced(name):
    processor = _hf_processors()[name]
    pre = Preprocess.from_hf(processor)
    for img in (_photo(), _photo(241, 317)):  # odd margins: the crop offsets' rounding shows
        got, want = pre.transform()(img), _hf_pixels(processor, img)
        assert got.shape == want.shape
        # within 1/255 after normalisation (float rounding of the fused rescale-normalise only)
        assert (got - want).abs().max().item() <= 1 / 255


def test_squashing_processors_keep_the_whole_width():
    # ViT's processor squashes a 4:3 photo; a centre crop would lose 12.5% of each side (-0.757/+0.749)
    x = Preprocess.from_hf(_hf_processors()["vit"]).transform()(_ramp())
    assert x[0, :, 0].max().item() < -0.99 and x[0, :, -1].min().item() > 0.99
    assert Preprocess.from_hf(_hf_processors()["vit"]).resize_mode == "squash"


def test_unknown_resize_mode_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="model.image.resize_mode='stretch'.*shortest.*squash.*border"):
        Preprocess(resize_mode="stretch")


def test_an_old_cache_without_the_view_is_refused_with_a_re_embed_message():
    from littune.cache.manifest import CacheMismatch, Manifest

    pre = Preprocess().to_dict()
    old = {k: v for k, v in pre.items() if k not in ("resize_mode", "backend")}  # what littune wrote before
    m = Manifest(tower="t", fingerprint="f", preprocess=old, embed_dim=8, dtype="float16", source="s", shard_size=4)
    with pytest.raises(CacheMismatch, match="cache /x/cache does not record how its images were resized.*re-embed"):
        m.check("t", "f", pre, 8, where="/x/cache")
    squash = {**pre, "resize_mode": "squash"}  # a cache embedded with another view: the field is named
    with pytest.raises(CacheMismatch, match="preprocess: cache has .*'resize_mode': 'shortest'"):
        Manifest(tower="t", fingerprint="f", preprocess=pre, embed_dim=8, dtype="float16", source="s",
                 shard_size=4).check("t", "f", squash, 8, where="/x/cache")


def test_a_view_override_on_a_tower_with_its_own_preprocessing_is_refused():
    from littune.towers.config import ImageTowerConfig

    class _OwnPre:  # e.g. open_clip's transforms (infer/open_clip_model.py)
        pass

    class _Tower:
        name, preprocess = "open_clip:ViT-B-32", _OwnPre()

    with pytest.raises(ValueError, match=r"model.image.resize_mode='squash': the tower open_clip:ViT-B-32 keeps "
                                         r"its own preprocessing \(_OwnPre\)"):
        ImageTowerConfig(resize_mode="squash")._with_view(_Tower(), {"resize_mode": "squash"})


def test_unknown_resize_mode_in_a_config_is_refused_before_any_tower_loads(tmp_path):
    from littune.config import load_config, validate
    from littune.config.loader import ConfigError

    cfg = load_config(None, ["model.image.resize_mode=crop", f"data.train={tmp_path}"])
    with pytest.raises(ConfigError, match="model.image.resize_mode='crop' is not one of: shortest"):
        validate(cfg)


def test_beit_with_mean_pooling_reads_pooler_output(tmp_path):
    import transformers as tr

    from littune.towers import create_image_tower

    torch.manual_seed(0)
    model = tr.BeitModel(tr.BeitConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, image_size=32, patch_size=8, use_mean_pooling=True))
    model.save_pretrained(tmp_path)
    tr.BeitImageProcessor(size={"height": 32, "width": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    tower = create_image_tower(f"hf:{tmp_path}")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = tower.model(pixel_values=x)
        torch.testing.assert_close(tower(x), out.pooler_output)  # layer-normed mean of the patch tokens
        assert not torch.allclose(tower(x), out.last_hidden_state[:, 0])
    assert tower.preprocess.resize_mode == "squash"
