"""End to end on real data: Flickr8k pairs embedded by the packaged EfficientNet-Lite0, a small text tower
trained on them; dev retrieval far above chance."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from littune.cache import EmbeddingCache
from littune.train import Trainer, load_config

from tests.ci import missing

N_TRAIN, N_DEV, STEPS = 300, 100, 150


def _write_split(flickr: Path, split: str, n: int, out: Path) -> Path:
    captions: dict[str, list[str]] = {}
    with (flickr / "captions.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            captions.setdefault(row["image"], []).append(row["caption"])
    names = (flickr / "splits" / f"{split}.txt").read_text().split()[:n]
    with out.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption"])
        for name in names:
            w.writerows([str(flickr / "images" / name), c] for c in captions[name])
    return out


@pytest.mark.slow
@pytest.mark.data
def test_lit_on_flickr8k_subset(tmp_path, shared_data):
    flickr = shared_data / "flickr8k"
    if not (flickr / "captions.csv").is_file():
        missing(f"Flickr8k not found at {flickr}")
    train_csv = _write_split(flickr, "train", N_TRAIN, tmp_path / "train.csv")
    dev_csv = _write_split(flickr, "dev", N_DEV, tmp_path / "dev.csv")
    cfg = load_config(None, [
        f"data.train={train_csv}", f"data.dev={dev_csv}", f"data.cache_root={tmp_path / 'cache'}",
        "data.num_workers=1",
        "model.image.name=efficientnet_lite0", "model.image.lock=L",  # the packaged ImageNet weights
        "model.text.name=scratch", "model.text.tokenizer=train", "model.text.vocab_size=2000",
        "model.text.width=128", "model.text.depth=1", "model.text.heads=4", "model.text.context_length=24",
        f"train.out_dir={tmp_path / 'run'}", f"train.steps={STEPS}", "train.batch_size=64", "train.log_every=10",
        "train.ckpt_every=0", "train.progress=false",
        "optim.lr=2e-3", "optim.warmup_steps=20", "optim.weight_decay=0.01",
    ])
    trainer = Trainer(cfg)
    image_fp = trainer.model.image.fingerprint()
    summary = trainer.fit()

    run = tmp_path / "run"
    manifest = json.loads((run / "cache_manifest.json").read_text())
    assert manifest["tower"] == "efficientnet_lite0" and manifest["embed_dim"] == 1280
    assert manifest["count"] == N_TRAIN and manifest["n_captions"] == 5 * N_TRAIN and manifest["n_bad"] == 0
    assert manifest["fingerprint"] == image_fp == summary["fingerprints"]["image"]
    cache = EmbeddingCache(trainer.batches.cache.folder)
    assert all(len(c) == 5 for c in cache.captions)

    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert len(losses) == STEPS // 10 and all(math.isfinite(x) for x in losses)
    assert losses[0] > 3.0  # near chance, log(64) = 4.16
    assert losses[-1] < 0.5 * losses[0], losses

    dev = summary["dev"]  # 100 dev images, 500 captions: chance R@1 = 0.01, R@5 = 0.05
    assert dev["i2t_r5"] >= 0.25 and dev["t2i_r5"] >= 0.25, dev
    assert dev["i2t_r1"] >= 0.08 and dev["t2i_r1"] >= 0.06, dev
