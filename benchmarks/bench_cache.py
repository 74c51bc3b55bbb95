"""Benchmark the locked-embedding cache: what it costs to make and what it saves in training.

    python benchmarks/bench_cache.py [--quick]

Prints a table and, as its last line, a JSON object of the figures, all from one run:
  embed_vs_forward   `littune embed` images/s from JPEG files / bare tower forward images/s on
                     decoded tensors (decoding hidden behind compute; goal >= 0.85)
  cache_overhead     cached training step time / text-tower-only step on the same batch (<= 1.10)
  cache_speedup      cached training examples/s / training that runs the locked tower every step
                     (open_clip's --lock-image), default towers; cache_speedup_vit_b16 likewise
                     for a timm ViT-B/16 image tower (random init) with the scratch text tower
  dev_r1_cached / dev_r1_live   dev retrieval R@1 after the same steps with and without the cache
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, flickr8k_slice, print_json, print_table, stage, timed  # noqa: E402


def embed_rates(work: Path, n_images: int, batch: int) -> tuple[float, float]:
    from littune.cache import EmbedOptions, embed
    from littune.towers import create_image_tower

    tower = create_image_tower("efficientnet_lite0")
    csv_path = flickr8k_slice(work, "train", n_images)
    x = torch.randn(batch, 3, 224, 224)
    stage(f"bare tower forward, batch {batch}, best of 3")
    with torch.inference_mode():
        tower(x)  # warm-up
        fwd = timed(lambda: tower(x), repeat=3)
    forward_ips = batch / fwd
    out = work / "embed_bench"
    shutil.rmtree(out, ignore_errors=True)
    stage(f"littune embed of {n_images} JPEGs")
    t0 = time.perf_counter()
    embed(str(csv_path), tower, out, EmbedOptions(batch_size=batch, progress=False))
    embed_ips = n_images / (time.perf_counter() - t0)
    return embed_ips, forward_ips


def trainer(work: Path, name: str, overrides: list[str]):
    from littune.train import Trainer, load_config

    out = work / "runs" / name
    shutil.rmtree(out, ignore_errors=True)
    cfg = load_config(None, [f"train.out_dir={out}", f"data.cache_root={work / 'cache'}", "train.progress=false",
                             "train.ckpt_every=0", "train.log_every=1000", *overrides])
    return Trainer(cfg)


def step_time(tr, steps: int, start: int = 0) -> float:
    """Seconds per step over ``steps`` steps, data loading included (after one warm-up step)."""
    it = tr.batches.iterate(start, start + steps + 1)
    tr.train_step(next(it))
    t0 = time.perf_counter()
    for b in it:
        tr.train_step(b)
    return (time.perf_counter() - t0) / steps


def text_only_time(tr, steps: int) -> float:
    """The same step with image features already in memory: the floor a cache could reach."""
    batch = tr.batches(0)
    feats = batch["image_features"].clone()
    tr.train_step({"image_features": feats, "captions": batch["captions"]})
    return timed(lambda: [tr.train_step({"image_features": feats, "captions": batch["captions"]})
                          for _ in range(steps)]) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a few minutes: fewer images and steps")
    ap.add_argument("--work", default=None,
                    help="scratch folder, kept afterwards (default: a temporary one, removed at the end)")
    a = ap.parse_args()
    if not (SHARED / "flickr8k").is_dir():
        sys.exit(f"needs {SHARED}/flickr8k (the shared data)")
    from littune.progress import quiet_third_party_bars

    quiet_third_party_bars()  # stage lines say what is happening; transformers' bars would only repeat it
    if a.work:
        run(Path(a.work), a.quick)
        return
    with tempfile.TemporaryDirectory(prefix="littune-bench-") as work:  # caches, runs: hundreds of MB
        run(Path(work), a.quick)


def run(work: Path, quick: bool) -> None:
    n_img, steps, batch = (256, 3, 64) if quick else (1024, 8, 128)
    stage(f"work folder {work}; {'quick' if quick else 'full'} run: {n_img} images, batch {batch}")
    train_csv = flickr8k_slice(work, "train", n_img)
    dev_csv = flickr8k_slice(work, "dev", 200)

    embed_ips, forward_ips = embed_rates(work, n_img, 64)

    base = [f"data.train={train_csv}", f"train.batch_size={batch}", "data.num_workers=1"]
    stage(f"cached training steps (Lite0 + MiniLM; the first builds the training cache), {steps} steps")
    cached = trainer(work, "cached", base)
    t_cached = step_time(cached, steps)
    stage("text-only steps on the same batch")
    t_text = text_only_time(cached, steps)
    stage("live training steps (the locked tower runs every step)")
    live = trainer(work, "live", base + ["data.use_cache=false"])
    t_live = step_time(live, max(2, steps // 2))

    vit = ["model.image.name=timm:vit_base_patch16_224", "model.image.pretrained=false",
           "model.text.name=scratch", "model.text.lock=u"]
    stage("ViT-B/16 + scratch: cached steps (embeds the images with the ViT first)")
    vit_cached = trainer(work, "vit_cached", base + vit)
    t_vit_cached = step_time(vit_cached, steps)
    stage("ViT-B/16 + scratch: live steps")
    vit_live = trainer(work, "vit_live", base + vit + ["data.use_cache=false"])
    t_vit_live = step_time(vit_live, 2)

    # Quality parity: same seed and steps with and without the cache (same batches, same order).
    q_steps = 10 if quick else 30
    parity = {}
    for name, extra in (("cached", []), ("live", ["data.use_cache=false"])):
        stage(f"quality parity, {name}: {q_steps} steps, then dev retrieval")
        tr = trainer(work, f"parity_{name}", base + [f"train.steps={q_steps}", f"data.dev={dev_csv}",
                                                      "optim.warmup_steps=3"] + extra)
        parity[name] = tr.fit()["dev"]["i2t_r1"]

    figures = {
        "embed_images_per_s": round(embed_ips, 1),
        "forward_images_per_s": round(forward_ips, 1),
        "embed_vs_forward": round(embed_ips / forward_ips, 3),
        "cached_step_s": round(t_cached, 3),
        "text_only_step_s": round(t_text, 3),
        "cache_overhead": round(t_cached / t_text, 3),
        "live_step_s": round(t_live, 3),
        "cache_speedup": round(t_live / t_cached, 2),
        "vit_b16_cached_step_s": round(t_vit_cached, 3),
        "vit_b16_live_step_s": round(t_vit_live, 3),
        "cache_speedup_vit_b16": round(t_vit_live / t_vit_cached, 2),
        "dev_r1_cached": parity["cached"],
        "dev_r1_live": parity["live"],
        "batch_size": batch,
        "images": n_img,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "quick": quick,
    }
    stage("done")
    print_table(f"bench_cache ({'quick' if quick else 'full'}; batch {batch}, {n_img} images, "
                f"{torch.get_num_threads()} threads)", [
        ("embed images/s (JPEG -> cache)", f"{embed_ips:.1f}", ""),
        ("tower forward images/s (decoded tensors)", f"{forward_ips:.1f}", ""),
        ("embed_vs_forward", f"{figures['embed_vs_forward']:.2f}", ">= 0.85"),
        ("cached step s / text-only step s", f"{t_cached:.3f} / {t_text:.3f}", ""),
        ("cache_overhead", f"{figures['cache_overhead']:.2f}", "<= 1.10"),
        ("live (locked tower every step) step s", f"{t_live:.3f}", ""),
        ("cache_speedup (Lite0 + MiniLM)", f"{figures['cache_speedup']:.1f}x", "higher is better"),
        ("cache_speedup_vit_b16 (ViT-B/16 + scratch)", f"{figures['cache_speedup_vit_b16']:.1f}x", "higher is better"),
        (f"dev i2t R@1 after {q_steps} steps: cached / live", f"{parity['cached']:.3f} / {parity['live']:.3f}",
         "equal up to fp16 rounding"),
    ])
    print_json(figures)


if __name__ == "__main__":
    main()
