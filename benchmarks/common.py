"""Helpers shared by the benchmark scripts: data slices, timing, tables, the final JSON line."""
from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import Callable

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def flickr8k_slice(out: Path, split: str, n_images: int) -> Path:
    """A CSV (image,caption) of the first n images of a Flickr8k split, all their captions."""
    from littune.data.flickr8k import Flickr8k

    path = out / f"flickr8k_{split}_{n_images}.csv"
    if not path.is_file():
        f8k = Flickr8k(SHARED / "flickr8k", split)
        images, caps, c2i = f8k.images()[:n_images], f8k.captions(), f8k.caption_to_image()
        out.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["image", "caption"])
            w.writerows([images[i], c] for c, i in zip(caps, c2i) if i < n_images)
    return path


def timed(fn: Callable[[], object], repeat: int = 1) -> float:
    """Best wall time of ``repeat`` calls (the machine's speed varies; the best is the least noisy)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


_START = time.perf_counter()


def stage(message: str) -> None:
    """What a benchmark is doing now, with the time since it started (stderr: the table stays clean)."""
    print(f"[{time.perf_counter() - _START:7.1f} s] {message}", file=sys.stderr, flush=True)


def print_table(title: str, rows: list[tuple[str, str, str]]) -> None:
    w0 = max(len(r[0]) for r in rows + [("metric", "", "")])
    w1 = max(len(r[1]) for r in rows + [("", "value", "")])
    print(f"\n{title}\n")
    print(f"| {'metric':<{w0}} | {'value':>{w1}} | goal / note |")
    print(f"|{'-' * (w0 + 2)}|{'-' * (w1 + 2)}|-------------|")
    for name, value, note in rows:
        print(f"| {name:<{w0}} | {value:>{w1}} | {note} |")


def print_json(figures: dict) -> None:
    print(json.dumps(figures))
