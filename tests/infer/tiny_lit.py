"""A tiny trained LiT run for the inference, export and web tests (seconds on one core, no download).

The image tower is timm's random-init ``test_vit`` with weights saved to a file (so every build has
the same fingerprint), locked; the text tower a one-layer scratch transformer. It is trained for a
few dozen steps on two-colour images captioned with their colours ("red above blue").
"""
from __future__ import annotations

from pathlib import Path

from tests.cache.tiny_data import make_dataset, model_overrides, save_tokenizer, save_tower_weights

N_IMAGES = 24


def train_tiny_run(root: Path, steps: int = 40) -> dict:
    from littune.train import load_config, train

    weights = save_tower_weights(root / "tower" / "test_vit.safetensors", seed=0)
    data = make_dataset(root / "data", N_IMAGES)
    tok = save_tokenizer(root / "tokenizer" / "tokenizer.json")
    cfg = load_config(None, model_overrides(weights, tokenizer=tok) + [
        f"data.train={data}", f"data.cache_root={root / 'cache'}", "data.num_workers=0",
        f"train.out_dir={root / 'run'}", f"train.steps={steps}", "train.batch_size=12", "train.log_every=10",
        "train.ckpt_every=1000", "train.progress=false", "optim.warmup_steps=5", "optim.lr=0.003",
        "model.init_temperature=20"])
    train(cfg)
    images = sorted((root / "data" / "images").glob("*.jpg"))
    captions = {row.split(",")[0].split("/")[-1]: row.split(",")[1] for row in data.read_text().splitlines()[1:]}
    return {"run": root / "run", "images": images, "captions": [captions[p.name] for p in images],
            "weights": weights, "root": root}


def photo_folder(run: dict, folder: Path, n: int) -> Path:
    """A folder holding copies of the first ``n`` images of a tiny run (to index, classify, serve)."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    for p in run["images"][:n]:
        shutil.copy(p, folder / p.name)
    return folder
