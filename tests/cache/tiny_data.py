"""Tiny image-caption data and a tiny locked image tower for the cache and training tests.

Everything is made in a temporary folder: two-colour JPEGs (top half one colour, bottom half
another) captioned with their colours, and the weights of timm's random-init ``test_vit`` saved to
a file, so every build of the tower has the same weights (and so the same fingerprint) without
any download.
"""
from __future__ import annotations

import contextlib
import csv
import itertools
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {
    "red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 50, 220), "yellow": (240, 230, 40),
    "black": (10, 10, 10), "white": (245, 245, 245), "purple": (140, 40, 170), "orange": (250, 140, 20),
    "grey": (128, 128, 128),
}
TOWER = "timm:test_vit"  # 64-d features, 160 px input, ~0.4M parameters


def make_images(folder: Path, n: int, size: int = 48, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` distinct two-colour JPEGs in ``folder``; returns (file name, caption) pairs."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pairs = list(itertools.permutations(COLOURS, 2))
    if n > len(pairs):
        raise ValueError(f"at most {len(pairs)} distinct images")
    out = []
    for i, (a, b) in enumerate(pairs[:n]):
        pixels = np.empty((size, size, 3), np.float64)
        pixels[: size // 2] = COLOURS[a]
        pixels[size // 2:] = COLOURS[b]
        pixels += rng.normal(0, 8, pixels.shape)
        name = f"img_{i:03d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / name, quality=90)
        out.append((name, f"{a} above {b}"))
    return out


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption"])
        w.writerows(rows)
    return path


def make_dataset(folder: Path, n: int, seed: int = 0) -> Path:
    """Images under ``folder/images`` and ``folder/data.csv`` (paths relative to the CSV)."""
    rows = make_images(folder / "images", n, seed=seed)
    return write_csv(folder / "data.csv", [(f"images/{name}", cap) for name, cap in rows])


def make_cache(root: Path, n: int, weights: Path, seed: int = 0) -> Path:
    """``make_dataset(root / "data", n)`` embedded by the tiny tower into ``root / "cache"``."""
    from littune.cache import EmbedOptions, embed

    csv = make_dataset(root / "data", n, seed=seed)
    embed(str(csv), load_tower(weights), root / "cache", EmbedOptions(num_workers=0, progress=False))
    return root / "cache"


def save_tower_weights(path: Path, seed: int = 0, name: str = TOWER) -> Path:
    """Random-init weights of ``name`` in a safetensors file (a stand-in for pre-trained weights)."""
    import torch
    from safetensors.torch import save_file
    from littune.towers import create_image_tower

    torch.manual_seed(seed)
    tower = create_image_tower(name, pretrained=False, lock="L")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tower.model.state_dict().items()}, str(path))
    return path


def load_tower(weights: Path, name: str = TOWER, lock: str = "L"):
    from littune.towers import create_image_tower

    return create_image_tower(name, pretrained=False, checkpoint=str(weights), lock=lock)


def save_tokenizer(path: Path) -> Path:
    """A WordPiece tokenizer for the colour captions, trained once and saved (ids fixed from then on)."""
    from littune.towers import train_tokenizer

    captions = [f"{a} above {b}" for a, b in itertools.permutations(COLOURS, 2)]
    path.parent.mkdir(parents=True, exist_ok=True)
    train_tokenizer(captions, vocab_size=120).save(str(path))
    return path


def model_overrides(weights: Path, image_lock: str = "L", tokenizer: str | Path = "train") -> list[str]:
    """Dotted overrides for a tiny LiT model: the tiny locked tower and a 1-layer scratch text tower.

    ``tokenizer="train"`` trains one on the captions in each run; a saved tokenizer.json is needed
    where two runs must match bit for bit (see test_train's tokenizer test).
    """
    return [
        f"model.image.name={TOWER}", "model.image.pretrained=false", f"model.image.checkpoint={weights}",
        f"model.image.lock={image_lock}",
        "model.text.name=scratch", f"model.text.tokenizer={tokenizer}", "model.text.vocab_size=120",
        "model.text.width=32", "model.text.depth=1", "model.text.heads=2", "model.text.context_length=16",
    ]


# ---- running the real command line in a subprocess -----------------------------------------------
# ``python -m littune.cli`` runs cli.py as __main__, a second copy of the module that the
# sub-commands do not register with; calling littune.cli.main is what the console script does.
# LITTUNE_TEST_SLEEP slows a phase down (seconds per shard / per step) so a test can kill the
# process in the middle of a run; it changes no result.
_BOOT = """
import os, sys, time
delay = float(os.environ.get("LITTUNE_TEST_SLEEP") or 0)
if delay:
    import littune.cache.writer as w
    import littune.train.loop as loop
    shard = w._embed_shard
    def slow_shard(*a, **k):
        time.sleep(delay)
        return shard(*a, **k)
    w._embed_shard = slow_shard
    step = loop.Trainer.train_step
    def slow_step(self, batch):
        time.sleep(delay)
        return step(self, batch)
    loop.Trainer.train_step = slow_step
from littune.cli import main
sys.exit(main(sys.argv[1:]))
"""


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-c", _BOOT, *args]


def cli_env(sleep: float = 0.0) -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               LITTUNE_TEST_SLEEP=str(sleep))
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def wait_for_file(path: Path, proc, what: str, timeout: float = 120.0) -> None:
    """Poll until ``proc`` writes ``path`` (a shard, a checkpoint); fail if it ends or stalls first."""
    import time

    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"ended before its first {what}: {proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s"
        time.sleep(0.02)


@contextlib.contextmanager
def killed_at_the_end(proc):
    """Run the block, then SIGKILL ``proc`` (kill -9) and reap it; never leave it running on failure."""
    import signal

    try:
        yield proc
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()


# ---- comparing runs bit for bit ----------------------------------------------------------------------
def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by its relative path: two folders compare bit for bit."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@contextlib.contextmanager
def one_thread():
    """In-process runs use one thread like a subprocess with OMP_NUM_THREADS=1: the same kernels, bits."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
