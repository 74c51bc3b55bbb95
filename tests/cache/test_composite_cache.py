"""Averaged views and concatenated towers through the product: `littune embed --config`, the cache's
identity checks, `littune train` on that cache, and loading the run (tiny random-init towers, six
generated images)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import littune
from littune.cache import CacheMismatch, EmbeddingCache
from littune.cli import main
from littune.config import load_config
from littune.cache.verify import repair_hint
from littune.runs import load_run

from .tiny_data import make_dataset, save_tokenizer

IMAGE = """model:
  image:
    name: timm:test_resnet
    pretrained: false
    crop_pct: 1.0
    averaged_views: [shortest, border]
    concat:
      - {name: timm:test_vit, kwargs: {img_size: 48}}
"""


def _config(tmp_path, tokenizer) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(IMAGE + f"""  text: {{name: scratch, tokenizer: {tokenizer}, width: 32, depth: 1, heads: 2, context_length: 16}}
data: {{num_workers: 0, engine: torch}}
train: {{steps: 2, batch_size: 6, ckpt_every: 1000, progress: false, log_every: 1}}
optim: {{warmup_steps: 1}}
""")
    return str(path)


def test_embed_train_and_load_a_concatenation_of_averaged_towers(tmp_path, capsys):
    data = make_dataset(tmp_path / "data", 6)
    config = _config(tmp_path, save_tokenizer(tmp_path / "tok" / "tokenizer.json"))
    out = tmp_path / "cache"
    assert main(["embed", "--data", str(data), "--out", str(out), "--config", config, "--engine", "torch",
                 "--workers", "0", "--dtype", "float32", "--no-progress"]) == 0

    tower = load_config(config).model.image.build()
    assert tower.name == "concat_l2(timm:test_resnet+averaged(shortest,border),timm:test_vit+averaged(shortest,border))"
    cache = EmbeddingCache(out)
    cache.check(tower)  # the tower the config builds is the one that made the cache
    assert cache.manifest.embed_dim == tower.embed_dim == 96 + 64
    # each row is the tower's features of that image (decoded once, every part on its own view)
    transform = tower.preprocess.transform()
    pixels = torch.stack([transform(Image.open(p).convert("RGB")) for p in cache.image_paths])
    assert np.array_equal(cache.all().numpy(), tower(pixels).numpy())

    # a cache made otherwise is refused: members swapped, another view, unnormalised members
    for override in (["model.image.name=timm:test_vit", "model.image.kwargs={img_size: 48}",
                      "model.image.concat=[{name: timm:test_resnet}]"],
                     ["model.image.averaged_views=[shortest,squash]"], ["model.image.concat_normalize=false"]):
        other = load_config(config, override).model.image.build()
        with pytest.raises(CacheMismatch, match="made by another image tower"):
            cache.check(other)

    run_dir = tmp_path / "run"
    assert main(["train", "--config", config, f"data.train={data}", f"data.train_cache={out}",
                 f"train.out_dir={run_dir}", "--no-progress"]) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    model, _ = load_run(run_dir)  # rebuilds the tower from the run's config and checks its fingerprint
    assert (model.image.name, model.image.fingerprint()) == (tower.name, tower.fingerprint())
    lit = littune.load(run_dir)  # inference decodes and packs the views as the cache did
    emb = lit.embed_images([str(p) for p in cache.image_paths[:2]])
    assert emb.shape == (2, 160)
    assert torch.allclose(emb, lit.model.encode_image_features(cache.all()[:2]), atol=1e-6)
    assert "--config <the config it was made with>" in repair_hint(out, cache.manifest)  # --tower cannot say it

    # littune's own export holds the whole tower; open_clip's cannot
    assert main(["export", "--model", str(run_dir), "--out", str(tmp_path / "exp")]) == 0
    exported = littune.load(tmp_path / "exp")
    assert exported.model.image.fingerprint() == tower.fingerprint()
    assert torch.equal(exported.embed_images([str(p) for p in cache.image_paths[:2]]), emb)
    capsys.readouterr()
    assert main(["export", "--model", str(run_dir), "--out", str(tmp_path / "oc"), "--format", "open_clip"]) != 0
    assert "open_clip runs one tower on one view of the image" in capsys.readouterr().err


def test_embed_takes_the_tower_from_flags_or_from_a_config_not_both(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(IMAGE)
    out = str(tmp_path / "o")
    assert main(["embed", "--data", "x.csv", "--out", out, "--config", str(config), "--tower", "timm:test_vit"]) != 0
    assert "give the tower by --tower/--checkpoint or by --config" in capsys.readouterr().err
    assert main(["embed", "--data", "x.csv", "--out", out, "--config", str(config), "model.image.lock=U"]) != 0
    assert "model.image.lock='U'; a cache holds a locked tower's features" in capsys.readouterr().err
