"""Class anchors (train/anchors.py): prompts of the image tower's classes aimed at its own classifier."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from littune.config import ConfigError, load_config
from littune.train import Trainer
from littune.train.anchors import Anchors, anchor_prompts, classifier_targets
from littune.train.step import StepForward, plain_step
from littune.towers.config import ImageMemberConfig, ImageTowerConfig

from tests.cache.text_tower import save_tiny_bert
from tests.cache.tiny_data import TOWER, make_dataset

VIT = ImageMemberConfig(name="timm:test_vit", kwargs={"img_size": 48})


def _tower(**kw):
    return ImageTowerConfig(**{"name": "timm:test_resnet", "pretrained": False, **kw}).build()


def test_targets_score_an_image_as_the_members_classifiers_do():
    """cos(image embedding, target c) is the average of the members' bias-free cosine logits of class c."""
    tower = _tower(concat=[VIT])  # concat_l2: each member's features L2-normalised, then concatenated
    a, b = tower.members
    targets = classifier_targets(tower)
    assert targets.shape == (1000, 96 + 64)
    torch.testing.assert_close(targets.norm(dim=-1), torch.ones(1000))
    torch.manual_seed(0)
    fa, fb = F.normalize(torch.randn(5, 96), dim=-1), F.normalize(torch.randn(5, 64), dim=-1)
    image = F.normalize(torch.cat([fa, fb], dim=-1), dim=-1)  # what the model's image side makes of them
    wa = F.normalize(a.model.get_classifier().weight.detach(), dim=-1)
    wb = F.normalize(b.model.get_classifier().weight.detach(), dim=-1)
    torch.testing.assert_close(image @ targets.T, (fa @ wa.T + fb @ wb.T) / 2, rtol=1e-5, atol=1e-6)
    # A member's weight scales its part of the target as it scales its features.
    weighted = classifier_targets(_tower(concat=[ImageMemberConfig(name="timm:test_vit", kwargs={"img_size": 48},
                                                                   weight=2.0)]))
    torch.testing.assert_close(weighted, F.normalize(torch.cat([wa, 2 * wb], dim=1), dim=-1))
    # One tower: its classifier's rows, normalised.
    torch.testing.assert_close(classifier_targets(_tower()), wa)


def test_a_tower_without_its_imagenet_classifier_or_with_raw_concat_features_is_refused():
    with pytest.raises(ValueError, match=r"ImageNet-1k classifier .* timm:test_resnet has \(10, 96\)"):
        classifier_targets(_tower(kwargs={"num_classes": 10}))
    vit = ImageTowerConfig(name="timm:test_vit", pretrained=False, pooling="cls_mean", kwargs={"img_size": 48}).build()
    with pytest.raises(ValueError, match=r"timm:test_vit\+cls_mean has \(1000, 64\)"):  # not what its head reads
        classifier_targets(vit)
    with pytest.raises(ValueError, match="concat_normalize=true"):
        classifier_targets(_tower(concat=[VIT], concat_normalize=False))


def _anchors(classes=8, seed=0, weight=1.0, scale=30.0) -> Anchors:
    """Features that say which (template, class) they are, targets that say which class."""
    T, C = 3, 20
    feats = torch.zeros(T, C, 4)
    feats[..., 0] = torch.arange(C).float()  # the class
    feats[..., 1] = torch.arange(T).float()[:, None]  # the template
    targets = F.normalize(torch.randn(C, 6, generator=torch.Generator().manual_seed(1)), dim=-1)
    return Anchors(feats, targets, classes, scale, weight, seed)


def test_each_step_draws_distinct_classes_each_with_its_own_target_from_seed_step_and_rank_only():
    a = _anchors()
    feats, targets = a.draw(5)
    classes = feats[:, 0].long()
    assert feats.shape == (8, 4) and targets.shape == (8, 6)
    assert len(set(classes.tolist())) == 8  # without repeats
    assert torch.equal(targets, a.targets[classes])  # each prompt beside its own class' direction
    assert set(feats[:, 1].long().tolist()) <= {0, 1, 2}
    again = _anchors().draw(5)
    assert torch.equal(again[0], feats) and torch.equal(again[1], targets)  # a resume draws the same
    assert not torch.equal(a.draw(6)[0], feats)  # another step
    assert not torch.equal(a.draw(5, rank=1)[0], feats)  # another process
    assert not torch.equal(_anchors(seed=1).draw(5)[0], feats)  # another seed
    assert _anchors(classes=50).draw(0)[0].shape == (20, 4)  # never more than there are


def test_the_loss_is_a_weighted_symmetric_cross_entropy_that_prefers_prompts_on_their_targets():
    a = _anchors(weight=0.5, scale=10.0)
    _, targets = a.draw(0)
    prompts = torch.randn(8, 6, generator=torch.Generator().manual_seed(2))
    logits = 10.0 * F.normalize(prompts, dim=-1) @ targets.T
    y = torch.arange(8)
    want = 0.5 * 0.5 * (F.cross_entropy(logits, y) + F.cross_entropy(logits.T, y))
    torch.testing.assert_close(a.loss(prompts, targets), want)
    assert a.loss(3 * targets, targets) < a.loss(targets.roll(1, dims=0), targets)  # scale-free: cosines


class _Tiny(nn.Module):
    """What StepForward needs of a model: heads, temperature, bias."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.text_head = nn.Linear(4, 6)
        self.logit_scale = nn.Parameter(torch.tensor(2.0))
        self.logit_bias = nn.Parameter(torch.tensor(-1.0))

    def encode_text_features(self, x):
        return F.normalize(self.text_head(x), dim=-1)

    def encode_image_features(self, x):
        return F.normalize(x, dim=-1)


def test_a_step_adds_the_anchor_loss_and_its_gradient_reaches_the_text_head():
    a = _anchors()
    draw = a.draw(0)
    text, image = torch.randn(8, 4), torch.randn(8, 6)

    def step(anchors):
        model = _Tiny()
        loss = plain_step(StepForward(model), lambda i, t, s, b: ((i @ t.T) * s + b).logsumexp(1).mean(),
                          {"text_features": text}, {"image_features": image}, False, None, anchors)
        return loss, model.text_head.weight.grad.clone()

    plain, g_plain = step(None)
    both, g_both = step((a, *draw))
    model = _Tiny()
    extra = a.loss(model.encode_text_features(draw[0]), draw[1])
    extra.backward()
    torch.testing.assert_close(both, plain + extra.detach())
    torch.testing.assert_close(g_both, g_plain + model.text_head.weight.grad)


def test_anchor_prompts_are_template_major():
    assert anchor_prompts(["cat", "dog"], ["a {}.", "the {}!"]) == ["a cat.", "a dog.", "the cat!", "the dog!"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tower_weights):
    root = tmp_path_factory.mktemp("anchors")
    return {"root": root, "train": make_dataset(root / "data", 16), "bert": save_tiny_bert(root / "bert"),
            "weights": tower_weights}


def _cfg(s, out, *extra):
    return load_config(None, [
        f"model.image.name={TOWER}", "model.image.pretrained=false", f"model.image.checkpoint={s['weights']}",
        f"model.text.name=hf:{s['bert']}", "model.text.lock=L", "model.text.context_length=16",
        f"data.train={s['train']}", f"data.cache_root={s['root'] / 'cache'}", "data.num_workers=0", "data.engine=torch",
        f"train.out_dir={out}", "train.steps=2", "train.batch_size=8", "train.log_every=1",
        "train.ckpt_every=0", "train.progress=false", "optim.warmup_steps=1", *extra])


def test_a_run_with_anchors_embeds_the_prompts_once_and_trains_on_them(setup, tmp_path):
    on = Trainer(_cfg(setup, tmp_path / "on", "train.anchors.weight=1.0", "train.anchors.classes=16",
                      "train.anchors.templates=simple"))
    a = on.anchors
    assert a.features.shape == (8, 1000, 32) and a.targets.shape == (1000, 64)  # 8 templates x 1,000 classes
    torch.testing.assert_close(a.targets, F.normalize(on.model.image.model.get_classifier().weight.detach(), dim=-1))
    (folder,) = (setup["root"] / "cache").glob("anchors-*")
    stamp = next(folder.rglob("*.npy")).stat().st_mtime_ns
    off = Trainer(_cfg(setup, tmp_path / "off"))
    assert off.anchors is None
    batch = on.batches(0)
    on.train_step(batch)
    off.train_step(batch)
    g_on, g_off = on.model.text_head.weight.grad, off.model.text_head.weight.grad
    assert not torch.allclose(g_on, g_off)  # same init, same batch: the anchors add their gradient
    again = Trainer(_cfg(setup, tmp_path / "again", "train.anchors.weight=1.0", "train.anchors.templates=simple"))
    assert torch.equal(again.anchors.features, a.features)
    assert next(folder.rglob("*.npy")).stat().st_mtime_ns == stamp  # the prompts' cache reused, not rebuilt
    # The same prompts read by the same tower with another context length: its own cache beside the first,
    # as captions get one per tower identity (not a refusal of the first one's folder).
    other = Trainer(_cfg(setup, tmp_path / "other", "train.anchors.weight=1.0", "train.anchors.templates=simple",
                         "model.text.context_length=12"))
    assert other.anchors.features.shape == a.features.shape
    assert len(list(folder.glob("text/*/manifest.json"))) == 2


@pytest.mark.parametrize("extra, match", [
    (["model.image.head=linear"], r"train.anchors.weight=1.0 .* needs model.image.head=none"),
    (["model.text.lock=U"], r"train.anchors.weight=1.0 reads the class prompts' features from a text cache"),
    (["data.use_text_cache=false"], r"data.use_text_cache=true"),
    (["data.stream=true"], r"data.stream=false"),
    (["train.anchors.classes=1"], r"train.anchors.classes"),
    (["train.anchors.scale=0"], r"train.anchors.scale"),
    (["train.anchors.weight=-1"], r"train.anchors.weight"),
])
def test_settings_anchors_cannot_use_are_refused_by_key(setup, tmp_path, extra, match):
    weight = [] if any(e.startswith("train.anchors.weight") for e in extra) else ["train.anchors.weight=1.0"]
    with pytest.raises(ConfigError, match=match):
        Trainer(_cfg(setup, tmp_path / "x", *weight, *extra))
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())
