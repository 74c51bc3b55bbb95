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
    assert cfg.model.image.name.startswith("timm:vit_") and cfg.model.text.name.startswith("hf:bert-")
    assert cfg.train.batch_size >= 16384 and cfg.optim.lr == 0.001 and cfg.optim.grad_clip == 1.0
    assert cfg.model.init_temperature == 10.0


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
