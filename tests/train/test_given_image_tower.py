"""A caller that built the image tower already (the demo: it embeds its images first) hands it to
training and to loading the run: the tower is built once, not once per step of the pipeline."""
from __future__ import annotations

import pytest

from littune.towers.config import ImageTowerConfig, TextTowerConfig
from littune.runs import load_run
from littune.train import Trainer, load_config, train

from tests.cache.tiny_data import make_dataset, model_overrides, save_tokenizer, save_tower_weights


def test_training_and_loading_reuse_the_given_tower(tmp_path, monkeypatch):
    weights = save_tower_weights(tmp_path / "tower" / "test_vit.safetensors", seed=0)
    data = make_dataset(tmp_path / "data", 12)
    tok = save_tokenizer(tmp_path / "tokenizer" / "tokenizer.json")
    cfg = load_config(None, model_overrides(weights, tokenizer=tok) + [
        f"data.train={data}", f"data.cache_root={tmp_path / 'cache'}", "data.num_workers=0",
        f"train.out_dir={tmp_path / 'run'}", "train.steps=2", "train.batch_size=6", "train.ckpt_every=1000",
        "train.progress=false", "optim.warmup_steps=1"])
    tower = cfg.model.image.build()
    builds = []
    original = ImageTowerConfig.build
    monkeypatch.setattr(ImageTowerConfig, "build", lambda self: builds.append(self.name) or original(self))

    trainer = Trainer(cfg, image_tower=tower)
    trainer.fit()
    text_builds = []
    original_text = TextTowerConfig.build
    monkeypatch.setattr(TextTowerConfig, "build", lambda self, **kw: text_builds.append(self.name) or original_text(self, **kw))
    model, _ = load_run(tmp_path / "run", image_tower=tower)  # its fingerprint is checked as usual
    assert builds == [] and model.image is tower and len(text_builds) == 1
    # The demo evaluates with the text tower it trained with too: built once, its weights checked as ever.
    again, _ = load_run(tmp_path / "run", image_tower=tower, text_tower=trainer.model.text)
    assert again.text is trainer.model.text and len(text_builds) == 1
    assert again.fingerprints() == model.fingerprints()

    other = cfg.model.image.name
    cfg.model.image.name = "timm:resnet18"
    cfg.train.out_dir = str(tmp_path / "run2")
    with pytest.raises(ValueError, match=f"model.image builds 'timm:resnet18' but the tower given is '{other}'"):
        train(cfg, image_tower=tower)
