"""Image towers: every registered family runs forward/backward, reports its size and preprocessing,
loads local checkpoints strictly, and the packaged EfficientNet-Lite0/1/2 classify real photos."""
from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from PIL import Image

from littune.towers import IMAGE_TOWERS, Preprocess, create_image_tower, list_image_towers
from littune.towers.checkpoint import CheckpointMismatch, read_state_dict

from tests.ci import missing

from .tiny import HF_IMAGE_EMBED

# name, timm kwargs, input side, expected embedding size
TIMM_CASES = [
    ("timm:resnet18", {}, 32, 512),
    ("timm:vit_tiny_patch16_224", {"img_size": 32}, 32, 192),
    ("timm:mixer_s32_224", {"img_size": 64}, 64, 512),
    ("efficientnet_lite0", {}, 32, 1280),
    # 64 px: at 32 px Lite2's ImageNet weights leave random noise with no feature above ReLU6's zero
    ("efficientnet_lite1", {}, 64, 1280),
    ("efficientnet_lite2", {}, 64, 1280),
]
PACKAGED = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def _check_forward_backward(tower, side: int, embed_dim: int, lock: str) -> None:
    torch.manual_seed(0)
    pixels = torch.randn(2, 3, side, side)
    tower.train()
    out = tower(pixels)
    assert out.shape == (2, embed_dim) == (2, tower.embed_dim)
    assert torch.isfinite(out).all()
    assert out.abs().sum() > 0
    if lock == "L":
        assert not out.requires_grad and out.grad_fn is None
        assert not any(p.requires_grad for p in tower.parameters())
        return
    assert out.requires_grad
    (out ** 2).mean().backward()
    grads = [p.grad for p in tower.parameters() if p.grad is not None]
    assert grads, "no parameter received a gradient"
    assert all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("lock", ["L", "U", "u"])
@pytest.mark.parametrize("name,kwargs,side,embed_dim", TIMM_CASES, ids=[c[0] for c in TIMM_CASES])
def test_timm_towers_forward_backward(name, kwargs, side, embed_dim, lock):
    # Random init throughout, except the packaged Lite weights (local) when lock != 'u'.
    tower = create_image_tower(name, pretrained=name in PACKAGED, lock=lock, **kwargs)
    assert tower.lock_mode == lock and tower.locked == (lock == "L")
    _check_forward_backward(tower, side, embed_dim, lock)


@pytest.mark.parametrize("lock", ["L", "U", "u"])
@pytest.mark.parametrize("family", sorted(HF_IMAGE_EMBED))
def test_hf_towers_forward_backward(hf_image_dirs, family, lock):
    tower = create_image_tower(f"hf:{hf_image_dirs[family]}", lock=lock)
    assert tower.name == f"hf:{hf_image_dirs[family]}"
    _check_forward_backward(tower, 32, HF_IMAGE_EMBED[family], lock)


def test_hf_clip_tower_is_the_vision_model_of_the_saved_pair(hf_image_dirs):
    from transformers import CLIPModel

    tower = create_image_tower(f"hf:{hf_image_dirs['clip']}")
    full = CLIPModel.from_pretrained(hf_image_dirs["clip"]).eval()
    assert not any("text" in k for k in tower.state_dict())
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = full.vision_model(pixel_values=pixels).pooler_output  # CLS after post-layernorm
    torch.testing.assert_close(tower(pixels), expected, rtol=1e-5, atol=1e-5)


def test_hf_vit_tower_uses_final_norm_cls_token_not_tanh_pooler(hf_image_dirs):
    from transformers import ViTModel

    tower = create_image_tower(f"hf:{hf_image_dirs['vit']}")
    ref = ViTModel.from_pretrained(hf_image_dirs["vit"]).eval()
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = ref(pixel_values=pixels).last_hidden_state[:, 0]
    torch.testing.assert_close(tower(pixels), expected, rtol=1e-5, atol=1e-5)


def test_hf_pretrained_weights_are_loaded_and_random_init_differs(hf_image_dirs):
    pixels = torch.randn(2, 3, 32, 32)
    a = create_image_tower(f"hf:{hf_image_dirs['dinov2']}")
    b = create_image_tower(f"hf:{hf_image_dirs['dinov2']}")
    u = create_image_tower(f"hf:{hf_image_dirs['dinov2']}", lock="u")  # random init, not the folder's
    assert a.fingerprint() == b.fingerprint()
    torch.testing.assert_close(a(pixels), b(pixels))
    assert not torch.allclose(a(pixels), u(pixels).detach())


# ---- preprocessing comes from each model's own config ----------------------------------------------
HF_PREPROCESS = {
    # input_size, crop_pct, interpolation, mean, std  (what the saved processors say)
    "vit": (32, 1.0, "bilinear", (0.1, 0.2, 0.3), (0.3, 0.2, 0.1)),
    "dinov2": (32, 0.8, "bicubic", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "clip": (32, 1.0, "bicubic", (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "siglip": (32, 1.0, "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "resnet": (32, 0.8, "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # shortest_edge 32 / crop_pct 0.8 = 40
    "convnext": (32, 0.875, "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # int(32 / 0.875) = 36
}


@pytest.mark.parametrize("family", sorted(HF_PREPROCESS))
def test_hf_preprocess_from_processor_config(hf_image_dirs, family):
    size, crop, interp, mean, std = HF_PREPROCESS[family]
    pre = create_image_tower(f"hf:{hf_image_dirs[family]}").preprocess
    assert pre.input_size == size
    assert pre.crop_pct == pytest.approx(crop)
    assert pre.interpolation == interp
    assert pre.mean == pytest.approx(mean) and pre.std == pytest.approx(std)


def test_hf_preprocess_resize_sizes(hf_image_dirs):
    assert create_image_tower(f"hf:{hf_image_dirs['dinov2']}").preprocess.resize_size == 40
    assert create_image_tower(f"hf:{hf_image_dirs['resnet']}").preprocess.resize_size == 40
    assert create_image_tower(f"hf:{hf_image_dirs['convnext']}").preprocess.resize_size == 36


def test_preprocess_from_hf_edge_cases():
    import transformers as tr

    # ConvNeXt at >= 384 px resizes without cropping (transformers' own rule).
    big = Preprocess.from_hf(tr.ConvNextImageProcessor(size={"shortest_edge": 384}, crop_pct=0.875))
    assert (big.input_size, big.crop_pct) == (384, 1.0)
    # A shortest-edge processor without crop_pct and without centre crop.
    clip = Preprocess.from_hf(tr.CLIPImageProcessor(size={"shortest_edge": 48}, do_center_crop=False))
    assert (clip.input_size, clip.crop_pct) == (48, 1.0)


def test_preprocess_transform_normalises_with_the_processor_mean_std(hf_image_dirs):
    pre = create_image_tower(f"hf:{hf_image_dirs['vit']}").preprocess
    # (51, 102, 153) / 255 = (0.2, 0.4, 0.6); mean (0.1, 0.2, 0.3), std (0.3, 0.2, 0.1)
    img = Image.new("RGB", (50, 40), (51, 102, 153))
    x = pre.transform()(img)
    assert x.shape == (3, 32, 32)
    expected = torch.tensor([0.1 / 0.3, 0.2 / 0.2, 0.3 / 0.1])
    torch.testing.assert_close(x.mean(dim=(1, 2)), expected, atol=1e-3, rtol=0)
    assert pre.train_transform()(img).shape == (3, 32, 32)
    assert Preprocess.from_dict(pre.to_dict()) == pre


def test_preprocess_rejects_bad_values():
    with pytest.raises(ValueError, match="interpolation"):
        Preprocess(interpolation="cubic-ish")
    with pytest.raises(ValueError, match="crop_pct"):
        Preprocess(crop_pct=1.5)


def test_timm_preprocess_from_pretrained_cfg():
    vit = create_image_tower("timm:vit_tiny_patch16_224", pretrained=False, img_size=32)
    cfg = vit.model.pretrained_cfg
    assert vit.preprocess.mean == pytest.approx(cfg["mean"]) and vit.preprocess.std == pytest.approx(cfg["std"])
    assert vit.preprocess.crop_pct == pytest.approx(cfg["crop_pct"])
    assert vit.preprocess.interpolation == cfg["interpolation"]
    assert vit.preprocess.input_size == 32  # the model was built for 32 px, not the cfg's 224
    out = vit(torch.randn(1, 3, vit.preprocess.input_size, vit.preprocess.input_size))
    assert out.shape == (1, 192)

    r18 = create_image_tower("timm:resnet18", pretrained=False)
    cfg = r18.model.pretrained_cfg
    assert r18.preprocess.input_size == cfg["input_size"][-1]
    assert r18.preprocess.mean == pytest.approx(cfg["mean"]) and r18.preprocess.crop_pct == pytest.approx(cfg["crop_pct"])

    # The packaged Lite towers: timm's config for tf_efficientnet_liteN, (x/255 - 0.5)/0.5 at 224/240/260 px.
    for name, size, crop in [("efficientnet_lite0", 224, 0.875), ("efficientnet_lite1", 240, 0.882),
                             ("efficientnet_lite2", 260, 0.89)]:
        lite = create_image_tower(name, pretrained=False).preprocess
        cfg = timm.create_model(f"tf_{name}", pretrained=False).pretrained_cfg
        assert (lite.input_size, lite.crop_pct) == (cfg["input_size"][-1], pytest.approx(cfg["crop_pct"]))
        assert (lite.input_size, lite.crop_pct, lite.interpolation) == (size, pytest.approx(crop), "bicubic")
        assert lite.mean == pytest.approx((0.5, 0.5, 0.5)) and lite.std == pytest.approx((0.5, 0.5, 0.5))


def test_registry_declares_embed_dims_and_families():
    names = {t["name"]: t for t in list_image_towers()}
    assert {"timm:*", "hf:*", *PACKAGED} <= set(names)
    assert all(names[n]["embed_dim"] == 1280 for n in PACKAGED)
    assert "timm:resnet18" in IMAGE_TOWERS and "efficientnet_lite0" in IMAGE_TOWERS
    assert "nope" not in IMAGE_TOWERS


# ---- the packaged EfficientNet-Lite0/1/2 -------------------------------------------------------
@pytest.fixture(scope="module", params=PACKAGED)
def lite(request):
    return create_image_tower(request.param)


def test_lite_features_are_the_classifier_inputs(lite):
    pixels = torch.randn(2, 3, 32, 32)
    feats = lite(pixels)
    torch.testing.assert_close(lite.model.get_classifier()(feats), lite.logits(pixels), rtol=1e-4, atol=1e-4)


@pytest.mark.data
def test_lite_predicts_daisy_on_real_photos(lite, shared_data: Path):
    # ImageNet-1k has one of the five flowers, daisy (985). Measured on all 200 test daisies: 86.5% /
    # 86.0% / 85.5% top-1 for Lite0/1/2; on these 60: 90% / 87% / 87%. Weights loaded into the wrong
    # places score near 0; ImageNet's mean/std instead of (x/255 - 0.5)/0.5 scored 73-77% on 30.
    from timm.data import ImageNetInfo

    folder = shared_data / "flowers" / "test" / "daisy"
    files = sorted(folder.glob("*.jpg"))[:60]
    if len(files) < 30:
        missing(f"fewer than 30 daisy photos in {folder}")
    daisy = 985
    assert ImageNetInfo().index_to_description(daisy) == "daisy"
    tf = lite.preprocess.transform()
    pixels = torch.stack([tf(Image.open(f).convert("RGB")) for f in files])
    assert pixels.shape[-1] == {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}[lite.name]
    pred = lite.logits(pixels).argmax(dim=1)
    share = float((pred == daisy).float().mean())
    assert share >= 0.8, f"only {share:.0%} of {len(files)} daisy photos classified as ImageNet 'daisy' by {lite.name}"


def test_packaged_weights_refuse_another_variant():
    from littune.towers.image_timm import load_packaged_lite, packaged_lite_path

    lite2 = timm.create_model("tf_efficientnet_lite2", pretrained=False)
    with pytest.raises(ValueError, match="does not fit"):  # same tensor count as Lite1, other widths
        load_packaged_lite(lite2, packaged_lite_path(1))
    with pytest.raises(ValueError, match="386 tensors"):  # Lite1 into Lite0: other depth
        load_packaged_lite(timm.create_model("tf_efficientnet_lite0", pretrained=False), packaged_lite_path(1))


# ---- checkpoints -----------------------------------------------------------------------------------
def _save(state: dict, path: Path, wrap: str | None = None) -> Path:
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save({wrap: state} if wrap else state, path)
    return path


@pytest.mark.parametrize("fmt,wrap", [(".safetensors", None), (".pth", None), (".pth", "state_dict")])
def test_timm_tower_loads_local_checkpoint(tmp_path, fmt, wrap):
    torch.manual_seed(1)
    source = create_image_tower("timm:test_resnet", pretrained=False)
    path = _save(source.model.state_dict(), tmp_path / f"tiny_resnet{fmt}", wrap)
    torch.manual_seed(2)
    loaded = create_image_tower("timm:test_resnet", checkpoint=str(path))
    fresh = create_image_tower("timm:test_resnet", pretrained=False)
    pixels = torch.randn(2, 3, 32, 32)
    assert loaded.fingerprint() == source.fingerprint() != fresh.fingerprint()
    assert torch.equal(loaded(pixels), source(pixels))
    assert not torch.allclose(fresh(pixels), source(pixels))


def test_lite0_and_hf_towers_load_local_checkpoints(tmp_path, hf_image_dirs):
    torch.manual_seed(3)
    src = create_image_tower("efficientnet_lite0", pretrained=False)
    path = _save(src.model.state_dict(), tmp_path / "lite0.safetensors")
    assert create_image_tower("efficientnet_lite0", checkpoint=str(path)).fingerprint() == src.fingerprint()

    name = f"hf:{hf_image_dirs['siglip']}"
    src = create_image_tower(name, lock="u")  # random, differs from the folder's weights
    path = _save(src.model.state_dict(), tmp_path / "siglip.pth")
    loaded = create_image_tower(name, checkpoint=str(path))
    pixels = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(pixels), src(pixels).detach())
    assert not torch.allclose(create_image_tower(name)(pixels), loaded(pixels))


def test_checkpoint_mismatch_lists_keys_and_partial_load(tmp_path):
    torch.manual_seed(4)
    source = create_image_tower("timm:test_resnet", pretrained=False)
    state = dict(source.model.state_dict())
    state.pop("fc.weight")
    state["extra.weight"] = torch.zeros(3)
    path = _save(state, tmp_path / "partial.safetensors")
    with pytest.raises(CheckpointMismatch) as e:
        create_image_tower("timm:test_resnet", checkpoint=str(path))
    msg = str(e.value)
    assert "missing (1): fc.weight" in msg and "unexpected (1): extra.weight" in msg
    assert "allow_partial" in msg

    tower = create_image_tower("timm:test_resnet", checkpoint=str(path), allow_partial=True)
    own = tower.model.state_dict()
    assert torch.equal(own["conv1.0.weight"], state["conv1.0.weight"])
    assert torch.equal(own["layer4.0.bn2.running_var"], state["layer4.0.bn2.running_var"])
    assert not torch.equal(own["fc.weight"], source.model.state_dict()["fc.weight"])  # kept its own init


def test_checkpoint_shape_mismatch_fails_even_when_partial(tmp_path):
    state = dict(create_image_tower("timm:test_resnet", pretrained=False).model.state_dict())
    state["conv1.0.weight"] = torch.zeros(8, 3, 3, 3)
    path = _save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointMismatch, match=r"conv1\.0\.weight: file \(8, 3, 3, 3\) vs model \(16, 3, 3, 3\)"):
        create_image_tower("timm:test_resnet", checkpoint=str(path), allow_partial=True)


def test_read_state_dict_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_state_dict(tmp_path / "missing.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(CheckpointMismatch, match="not a state dict"):
        read_state_dict(tmp_path / "list.pth")
    torch.save({"model": {"a": torch.ones(2)}}, tmp_path / "nested.pth")
    assert list(read_state_dict(tmp_path / "nested.pth")) == ["a"]


# ---- names ---------------------------------------------------------------------------------------------
def test_unknown_tower_names_raise_keyerror_with_suggestion():
    with pytest.raises(KeyError) as e:
        create_image_tower("efficientnet-lite0")
    msg = e.value.args[0]
    assert "'efficientnet-lite0'" in msg and "Did you mean 'efficientnet_lite0'" in msg
    with pytest.raises(KeyError, match="not_a_real_model_xyz"):
        create_image_tower("timm:not_a_real_model_xyz")
    with pytest.raises(ValueError, match="needs an argument"):
        create_image_tower("timm")
    with pytest.raises(ValueError, match="empty argument"):
        create_image_tower("hf:")


def test_hf_folder_without_image_processor_is_refused(tmp_path):
    import transformers as tr

    cfg = tr.ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       image_size=32, patch_size=8)
    tr.ViTModel(cfg).save_pretrained(tmp_path / "vit-no-proc")
    with pytest.raises(ValueError, match="no image processor"):
        create_image_tower(f"hf:{tmp_path / 'vit-no-proc'}")
