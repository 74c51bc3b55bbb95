"""configs/paper/: the published LiT recipes parse, validate and train two steps with tiny stand-ins.

They are meant for GPUs at batch 16k-32k; here every value is kept except the towers (tiny
random-init stand-ins of the same families), the data and the sizes that need a GPU.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from littune.config import load_config, validate
from littune.train import Trainer

from tests.cache.text_tower import save_tiny_bert
from tests.cache.conftest import tower_weights  # noqa: F401  (fixture)
from tests.cache.tiny_data import make_dataset

PAPER = Path(__file__).resolve().parents[1] / "configs" / "paper"
CONFIGS = sorted(PAPER.glob("*.yaml"))


def test_there_are_paper_configs():
    assert {p.stem for p in CONFIGS} >= {"lit_b16_bert_base", "lit_b16_bert_base_sigmoid", "lit_l16_bert_large"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_paper_config_parses_with_its_published_values(path):
    cfg = load_config(path)
    validate(cfg)
    assert cfg.model.image.lock == "L" and cfg.model.image.head == "none"  # the LiT lock, no image head
    assert cfg.model.text.name.startswith("hf:bert-")
    # big_vision's towers: the ImageNet-21k AugReg checkpoints (common.py), not ImageNet-1k fine-tunes
    assert cfg.model.image.name in ("timm:vit_base_patch16_224.augreg_in21k", "timm:vit_large_patch16_224.augreg_in21k")
    # big_vision's view: resize(224)|value_range(-1, 1), bilinear, no crop (lit_coco.py L78, L82)
    im = cfg.model.image
    assert (im.resize_mode, im.interpolation, im.crop_pct) == ("squash", "bilinear", 1.0)
    # bert_tokenize(max_len=16): [CLS] + 15 word pieces, no [SEP]; the [CLS] token's features
    t = cfg.model.text
    assert (t.tokenize, t.context_length, t.pooling) == ("bert_tokenize", 16, "first")
    # lit_coco.py: lr 1e-3, wd 0.01 in optax.make's convention, clip 1, warmup max(3%, 100), cosine to 0;
    # scale_by_adam's defaults (0.9, 0.999, 1e-8)
    o = cfg.optim
    assert (o.lr, o.weight_decay, o.decay_convention, o.grad_clip) == (0.001, 0.01, "big_vision", 1.0)
    assert (o.beta1, o.beta2, o.eps, o.min_lr_ratio) == (0.9, 0.999, 1e-8, 0.0)
    assert o.warmup_steps == max(int(0.03 * cfg.train.steps), 100)
    assert cfg.train.batch_size >= 16384 and cfg.model.init_temperature == 10.0


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_paper_config_trains_with_tiny_stand_in_towers(path, tmp_path, tower_weights):
    data = make_dataset(tmp_path / "data", 16)
    bert = save_tiny_bert(tmp_path / "bert")
    cfg = load_config(path, [
        "model.image.name=timm:test_vit", "model.image.pretrained=false", f"model.image.checkpoint={tower_weights}",
        f"model.text.name=hf:{bert}", f"data.train={data}", f"data.cache_root={tmp_path / 'cache'}",
        "data.num_workers=0", "data.engine=torch", f"train.out_dir={tmp_path / 'run'}", "train.steps=2",
        "train.batch_size=8", "train.grad_cache_chunk=4", "optim.warmup_steps=1", "train.progress=false",
        "train.precision=fp32"])
    summary = Trainer(cfg).fit()
    assert summary["step"] == 2
    kept = load_config(path)  # what was replaced above is all that differs from the published recipe
    assert (cfg.train.loss, cfg.train.local_loss, cfg.model.init_bias) == (kept.train.loss, kept.train.local_loss,
                                                                          kept.model.init_bias)
