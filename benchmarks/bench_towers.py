"""Benchmark the offline image towers EfficientNet-Lite0/1/2: speed and what their features know.

    python benchmarks/bench_towers.py [--quick] [--threads 2] [--cache-root DIR]

Prints a table and, as its last line, a JSON object of the figures:
  <tower>_images_per_s   bare tower forward on decoded tensors at the tower's own input size
                         (batch 32, --threads torch threads, best of 3)
  <tower>_probe_top1     flowers linear probe: logistic regression on the locked features of
                         flowers/train, scored on flowers/test (--quick: the first 60 photos of
                         each class of each split, 300 + 300 images)
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, print_json, print_table, timed  # noqa: E402

TOWERS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def forward_rate(tower, batch: int) -> float:
    side = tower.preprocess.input_size
    x = torch.randn(batch, 3, side, side)
    with torch.inference_mode():
        tower(x)  # warm-up
        return batch / timed(lambda: tower(x), repeat=3)


def subset(work: Path, per_class: int) -> tuple[Path, Path]:
    """The first ``per_class`` photos of each flowers class of each split, as symlinked folders."""
    out = []
    for split in ("train", "test"):
        for cls in sorted(os.listdir(SHARED / "flowers" / split)):
            for name in sorted(os.listdir(SHARED / "flowers" / split / cls))[:per_class]:
                dst = work / split / cls / name
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.symlink_to(SHARED / "flowers" / split / cls / name)
        out.append(work / split)
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="probe on 60 photos per class of each split")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--cache-root", default=None, help="embedding caches (default: $LITTUNE_CACHE_DIR or ~/.cache/littune)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from littune.evaluate.suite import eval_probe
    from littune.towers import create_image_tower

    with tempfile.TemporaryDirectory() as tmp:
        train, test = subset(Path(tmp), 60) if a.quick else (SHARED / "flowers" / "train", SHARED / "flowers" / "test")
        figures, rows = {}, []
        for name in TOWERS:
            tower = create_image_tower(name)
            ips = forward_rate(tower, a.batch)
            probe = eval_probe(tower, train, test, cache_root=a.cache_root)
            figures[f"{name}_images_per_s"] = round(ips, 1)
            figures[f"{name}_probe_top1"] = round(probe["top1"], 4)
            rows += [(f"{name} forward images/s ({tower.preprocess.input_size} px, {a.threads} threads)",
                      f"{ips:.1f}", "higher is better"),
                     (f"{name} flowers probe top-1", f"{probe['top1']:.3f}", "higher is better")]
    print_table("Offline image towers (EfficientNet-Lite, locked ImageNet weights)", rows)
    print_json(figures)


if __name__ == "__main__":
    main()
