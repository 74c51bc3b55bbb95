"""Averaged views and concatenated towers (towers/composite.py, issue 23 item 3), on tiny random-init timm towers.

``timm:test_resnet`` (96-d, 160 px, bilinear) and ``timm:test_vit`` built at 48 px (64-d, bicubic):
two towers with different input sizes, interpolations and normalisations, as Lite0 (224) and Lite2 (260).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from littune.cache.naming import auto_cache_dir
from littune.config import load_config
from littune.config.loader import ConfigError
from littune.towers.composite import AveragedViewsTower, ConcatImageTower, PackedPreprocess
from littune.towers.config import ImageMemberConfig, ImageTowerConfig
from littune.towers.engine import image_engine

VIT = ImageMemberConfig(name="timm:test_vit", kwargs={"img_size": 48})
MODES = ["shortest", "squash", "border"]


def cfg(**kw) -> ImageTowerConfig:
    return ImageTowerConfig(**{"name": "timm:test_resnet", "pretrained": False, **kw})


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    """Three noisy images, one wide, one tall, one square: the three views of each differ."""
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((60, 90), (80, 50), (64, 64))]


def run(tower, images) -> torch.Tensor:
    """The tower on its own eval transform of ``images``: (N, D)."""
    t = tower.preprocess.transform()
    return tower(torch.stack([t(im) for im in images]))


def test_concat_features_are_the_members_features_in_order(images):
    raw = cfg(concat=[VIT], concat_normalize=False).build()
    a, b = raw.members
    assert isinstance(raw, ConcatImageTower) and raw.name == "concat(timm:test_resnet,timm:test_vit)"
    assert (a.preprocess.input_size, b.preprocess.input_size) == (160, 48)  # each its own size
    assert raw.embed_dim == a.embed_dim + b.embed_dim == 96 + 64
    # The members are the plain towers (same seeded random init), each on its own preprocessing.
    assert a.fingerprint() == cfg().build().fingerprint()
    got = run(raw, images)
    assert got.shape == (3, 160) and torch.equal(got, torch.cat([run(a, images), run(b, images)], dim=-1))

    unit = cfg(concat=[VIT]).build()  # concat_normalize: each member L2-normalised first
    assert unit.name == "concat_l2(timm:test_resnet,timm:test_vit)"
    got = run(unit, images)
    want = torch.cat([F.normalize(run(a, images), dim=-1), F.normalize(run(b, images), dim=-1)], dim=-1)
    assert torch.equal(got, want)
    assert torch.allclose(got[:, :96].norm(dim=-1), torch.ones(3)) and torch.allclose(got[:, 96:].norm(dim=-1), torch.ones(3))


def test_packed_pixels_are_each_members_own_pixels(images):
    tower = cfg(concat=[VIT]).build()
    pre = tower.preprocess
    a, b = tower.members
    img = images[0]
    packed = pre.pil_transform()(img)  # (N,) uint8
    assert packed.dtype == torch.uint8 and packed.shape == (3 * 160 * 160 + 3 * 48 * 48,)
    pa, pb = pre.split(packed)
    assert torch.equal(pa, a.preprocess.pil_transform()(img)) and torch.equal(pb, b.preprocess.pil_transform()(img))
    # the cache's path (uint8 in the workers, normalised on the batch) equals the eval transform, bitwise
    assert torch.equal(pre.normalize(packed[None])[0], pre.transform()(img))
    # augmented views (data.views): every member draws the same random crop and flip, at its own size
    torch.manual_seed(7)
    aug = pre.pil_train_transform()(img)
    for part, member in zip(pre.split(aug), (a, b)):
        torch.manual_seed(7)
        assert torch.equal(part, member.preprocess.pil_train_transform()(img))
    # the engine path the cache uses: uint8 (B, N) in, the tower's features out
    x = torch.stack([pre.pil_transform()(im) for im in images])
    assert np.array_equal(image_engine(tower, "torch")(x.numpy()), run(tower, images).numpy())


def test_members_order_preprocessing_and_normalisation_are_the_identity(tmp_path):
    base = cfg(concat=[VIT]).build()
    others = {
        "order": ImageTowerConfig(name=VIT.name, kwargs=VIT.kwargs, pretrained=False,
                                  concat=[ImageMemberConfig(name="timm:test_resnet")]).build(),
        "member view": cfg(concat=[replace(VIT, crop_pct=1.0)]).build(),
        "inherited view": cfg(concat=[VIT], resize_mode="squash").build(),
        "raw": cfg(concat=[VIT], concat_normalize=False).build(),
    }
    ident = lambda t: (t.name, t.fingerprint(), t.preprocess.to_dict())  # noqa: E731  (what the manifest checks)
    assert all(ident(t) != ident(base) for t in others.values())
    assert others["order"].fingerprint() != base.fingerprint()  # the weights sit under their position
    assert others["member view"].preprocess.parts[1].crop_pct == 1.0 and base.preprocess.parts[1].crop_pct == 0.95
    # inherited: model.image.resize_mode applies to every member that does not set its own
    assert [p.resize_mode for p in others["inherited view"].preprocess.parts] == ["squash", "squash"]
    folders = {auto_cache_dir(tmp_path, "a.csv", t, 0, "c0ffee") for t in [base, *others.values()]}
    assert len(folders) == 5


def test_averaged_views_are_the_mean_of_each_view_alone(images):
    tower = cfg(crop_pct=1.0, averaged_views=MODES).build()
    assert isinstance(tower, AveragedViewsTower) and tower.name == "timm:test_resnet+averaged(shortest,squash,border)"
    plain = {m: cfg(crop_pct=1.0, resize_mode=m).build() for m in MODES}
    per_view = torch.stack([run(plain[m], images) for m in MODES])  # (V, N, D), each view computed on its own
    assert not torch.equal(per_view[0], per_view[1]) and not torch.equal(per_view[1], per_view[2])  # views differ
    assert tower.embed_dim == 96 and torch.equal(run(tower, images), per_view.mean(0))
    assert [p.resize_mode for p in tower.preprocess.parts] == MODES and tower.preprocess.combine == "mean"
    assert tower.fingerprint() != plain["shortest"].fingerprint()


def test_one_view_averaged_is_the_plain_tower(images):
    one = cfg(averaged_views=["squash"]).build()
    plain = cfg(resize_mode="squash").build()
    # the same tower, so the same cache: name, weights and preprocessing
    assert (one.name, one.fingerprint(), one.preprocess) == (plain.name, plain.fingerprint(), plain.preprocess)
    assert torch.equal(run(one, images), run(plain, images))
    wrapped = AveragedViewsTower(plain, [plain.preprocess], ["squash"])  # the class itself, one view
    assert torch.equal(run(wrapped, images), run(plain, images))


def test_concat_of_averaged_members(images):
    tower = cfg(crop_pct=1.0, averaged_views=["shortest", "border"], concat=[VIT], concat_normalize=False).build()
    assert tower.name == ("concat(timm:test_resnet+averaged(shortest,border),"
                          "timm:test_vit+averaged(shortest,border))")
    assert tower.name == cfg(crop_pct=1.0, averaged_views=["shortest", "border"], concat=[VIT],
                             concat_normalize=False).tower_name()
    assert all(isinstance(p, PackedPreprocess) for p in tower.preprocess.parts)
    want = torch.cat([run(m, images) for m in tower.members], dim=-1)
    assert torch.equal(run(tower, images), want)


def _own_transforms_tower(*, pretrained=True, checkpoint=None, allow_partial=False, pooling="default", **kw):
    from torchvision import transforms as T

    from littune.towers import ImageTower

    class Tower(ImageTower):  # a stand-in for a tower with transforms of its own (open_clip's)
        def __init__(self):
            super().__init__()
            self.name, self.embed_dim, self.conv = "own_transforms", 4, torch.nn.Conv2d(3, 4, 3)
            self.preprocess = T.Compose([T.Resize(32), T.CenterCrop(32), T.ToTensor()])

        def features(self, pixels):
            return self.conv(pixels).mean((2, 3))

    return Tower()


@pytest.fixture
def own_transforms():
    from littune.towers.catalog import IMAGE_TOWERS

    IMAGE_TOWERS.register("own_transforms")(_own_transforms_tower)
    yield "own_transforms"
    IMAGE_TOWERS._entries.pop("own_transforms")


def test_what_must_be_shared_is_refused_naming_the_key(own_transforms):
    with pytest.raises(ValueError, match=r"model\.image\.concat makes one locked tower .* model\.image\.lock=L \(got 'U'\)"):
        cfg(lock="U", concat=[VIT]).build()
    with pytest.raises(ValueError, match=r"model\.image\.averaged_views makes one locked tower .* \(got 'u'\)"):
        cfg(lock="u", averaged_views=MODES).build()
    with pytest.raises(ValueError, match=r"model\.image\.concat\[0\]\.name='own_transforms': the tower own_transforms "
                                         r"keeps its own preprocessing \(Compose\)"):
        cfg(concat=[ImageMemberConfig(name=own_transforms)]).build()
    with pytest.raises(ValueError, match=r"model\.image\.averaged_views with model\.image\.name='own_transforms'"):
        cfg(name=own_transforms, averaged_views=MODES).build()
    with pytest.raises(ValueError, match=r"model\.image\.averaged_views\[1\]='diagonal' is not a resize mode"):
        cfg(averaged_views=["shortest", "diagonal"]).build()
    with pytest.raises(ValueError, match=r"names a view twice"):
        cfg(averaged_views=["squash", "squash"]).build()
    with pytest.raises(ValueError, match=r"model\.image\.resize_mode='squash' and model\.image\.averaged_views"):
        cfg(resize_mode="squash", averaged_views=MODES).build()
    with pytest.raises(ValueError, match=r"model\.image\.concat\[0\]\.resize_mode='border' with model\.image\.averaged_views"):
        cfg(averaged_views=MODES, concat=[replace(VIT, resize_mode="border")]).build()
    with pytest.raises(ValueError, match=r"crop_pct must be in \(0, 1\].*model\.image\.concat\[0\]\.name"):
        cfg(concat=[replace(VIT, crop_pct=1.5)]).build()
    with pytest.raises(ConfigError, match="nmae"):  # a typo in a member's keys, from the config file's side
        load_config(None, ["model.image.concat=[{nmae: timm:test_vit}]"])


def test_members_and_views_from_a_config_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  image:\n    name: efficientnet_lite0\n    crop_pct: 1.0\n"
                    "    concat:\n      - {name: efficientnet_lite2}\n")
    image = load_config(path, ["model.image.averaged_views=[shortest,squash,border]"]).model.image
    assert [m.name for m in image.members()] == ["efficientnet_lite0", "efficientnet_lite2"]
    assert [m.crop_pct for m in image.members()] == [1.0, 1.0] and image.averaged_views == MODES
    assert image.tower_name() == ("concat_l2(efficientnet_lite0+averaged(shortest,squash,border),"
                                  "efficientnet_lite2+averaged(shortest,squash,border))")


def test_a_members_weight_scales_its_normalised_features_and_is_in_the_name(images, tmp_path):
    plain = cfg(concat=[VIT]).build()
    half = cfg(concat=[replace(VIT, weight=0.5)]).build()
    assert half.name == "concat_l2(timm:test_resnet,timm:test_vit*0.5)"
    assert cfg(concat=[replace(VIT, weight=0.5)]).tower_name() == half.name
    assert half.fingerprint() == plain.fingerprint()  # the same weights; the name keeps the caches apart
    assert auto_cache_dir(tmp_path, "a.csv", half, 0, "c0ffee") != auto_cache_dir(tmp_path, "a.csv", plain, 0, "c0ffee")
    p, h = run(plain, images), run(half, images)
    assert torch.equal(h[:, :96], p[:, :96]) and torch.equal(h[:, 96:], p[:, 96:] * 0.5)
    # the cosine with a text embedding split the same way weighs the members 1 : w^2
    t = F.normalize(torch.randn(3, 160), dim=-1)
    ca, cb = (F.normalize(t[:, :96], dim=-1) * F.normalize(p[:, :96], dim=-1)).sum(-1), \
        (F.normalize(t[:, 96:], dim=-1) * F.normalize(p[:, 96:], dim=-1)).sum(-1)
    t_split = torch.cat([F.normalize(t[:, :96], dim=-1), 0.5 * F.normalize(t[:, 96:], dim=-1)], dim=-1)
    got = F.cosine_similarity(t_split, h, dim=-1)
    assert torch.allclose(got, (ca + 0.25 * cb) / 1.25, atol=1e-6)
    assert cfg(concat=[replace(VIT, weight=1.0)]).build().name == plain.name  # weight 1: the old name and caches


@pytest.mark.parametrize("weight", [0, -1, 101, float("nan"), "half", True])
def test_a_weight_outside_its_range_is_refused_naming_the_key(weight):
    with pytest.raises(ValueError, match=r"model\.image\.concat\[0\]\.weight=.* must be a number in \(0, 100\]"):
        cfg(concat=[replace(VIT, weight=weight)]).build()


def test_a_weight_from_a_config_override():
    image = load_config(None, ["model.image.concat=[{name: efficientnet_lite2, weight: 0.7}]"]).model.image
    assert image.concat_weights() == [1.0, 0.7]
    assert image.tower_name() == "concat_l2(efficientnet_lite0,efficientnet_lite2*0.7)"
