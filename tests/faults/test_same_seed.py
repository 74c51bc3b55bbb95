"""Same command, same seed, same model: whether the caches existed before or not.

Embedding a missing cache draws random numbers (a DataLoader's base seed, seeded decoding). Before,
the dev split's cache was embedded at the first evaluation, in the middle of training, and the draw
shifted every later dropout mask: a cold run and a warm run trained different weights."""
from __future__ import annotations

import torch
from safetensors.torch import load_file

from littune.train import Trainer, load_config

from tests.cache.tiny_data import make_dataset, model_overrides


def test_cold_and_warm_caches_train_the_same_weights(tmp_path, tower_weights, tokenizer_file):
    train, dev = make_dataset(tmp_path / "train", 24), make_dataset(tmp_path / "dev", 12, seed=3)
    cache_root = tmp_path / "caches"

    def run(name: str) -> dict[str, torch.Tensor]:
        cfg = load_config(None, model_overrides(tower_weights, tokenizer=tokenizer_file) + [
            f"data.train={train}", f"data.dev={dev}", f"data.cache_root={cache_root}", "data.num_workers=0",
            f"train.out_dir={tmp_path / name}", "train.steps=6", "train.batch_size=8", "train.eval_every=2",
            "train.ckpt_every=0", "train.progress=false", "train.threads=1", "optim.warmup_steps=2",
            "model.text.dropout=0.2"])  # dropout: every step draws from the trainer's random stream
        Trainer(cfg).fit()
        return load_file(str(tmp_path / name / "model.safetensors"))

    cold = run("cold")  # embeds the training cache before the model is built, the dev cache at step 2
    assert len(list(cache_root.iterdir())) == 2
    warm = run("warm")  # finds both
    assert cold.keys() == warm.keys()
    for k in cold:
        assert torch.equal(cold[k], warm[k]), f"{k} depends on whether the caches existed"
