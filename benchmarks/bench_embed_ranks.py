"""Benchmark multi-process embedding: ``torchrun --nproc_per_node 2 -m littune embed`` (gloo, CPU, one
thread each) against one process with two threads, on the same Flickr8k images.

    python benchmarks/bench_embed_ranks.py [--images 400] [--shard-size 50] [--tower efficientnet_lite0]

Both run the real command (``python -m littune embed``, torch engine, decoding in the main process:
``--workers 0``) into a fresh cache of ``--shard-size``-image shards (shard k goes to rank k % 2: equal
shards keep both processes busy to the end); the time is the command's wall time, start-up (imports, the
tower) included, so images/s is what a person waiting for the command sees. Then every file of the
two caches is compared byte for byte (the manifest's ``world_size`` aside): shard k is embedded by
rank k % 2, and the merged cache must be the one-process cache.

Prints a table and, as its last line, a JSON object: images, tower, one_process (threads, wall_s,
images_per_s), two_processes (likewise), speedup, files_compared, files_differing (names),
npy_max_abs_diff (the largest difference between the two caches' stored features).
One process with 2 threads and 2 processes with 1 thread run other convolution kernels, so their
features may differ in the last bits; the test (tests/distributed/test_embed_ranks.py) shows the files
byte-identical where each process has the same threads. On a shared, busy machine the times are noisy.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import flickr8k_slice, print_json, print_table, stage  # noqa: E402


def embed_command(data: Path, out: Path, tower: str, procs: int, shard_size: int) -> list[str]:
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs), "-m"]
              if procs > 1 else [sys.executable, "-m"])
    return [*launch, "littune", "embed", "--data", str(data), "--out", str(out), "--tower", tower, "--engine", "torch",
            "--workers", "0", "--shard-size", str(shard_size), "--no-progress", "--json"]


def timed_embed(data: Path, out: Path, tower: str, procs: int, threads: int, shard_size: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    r = subprocess.run(embed_command(data, out, tower, procs, shard_size), env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{procs} process(es): {r.stderr[-2000:]}")
    return wall


def compare(a: Path, b: Path) -> tuple[int, list[str], float]:
    """(files compared, names that differ, largest feature difference) of two cache folders."""
    names = sorted({str(p.relative_to(a)) for p in a.rglob("*") if p.is_file()}
                   | {str(p.relative_to(b)) for p in b.rglob("*") if p.is_file()})
    differ, worst = [], 0.0
    for name in names:
        pa, pb = a / name, b / name
        if name == "manifest.json":  # differs in world_size only, by design
            da, db = json.loads(pa.read_text()), json.loads(pb.read_text())
            if {**da, "world_size": 0} != {**db, "world_size": 0}:
                differ.append(name)
            continue
        if not (pa.is_file() and pb.is_file()) or pa.read_bytes() != pb.read_bytes():
            differ.append(name)
        if name.endswith(".npy") and pa.is_file() and pb.is_file():
            worst = max(worst, float(np.abs(np.load(pa).astype(np.float64) - np.load(pb).astype(np.float64)).max()))
    return len(names), differ, worst


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=400)
    p.add_argument("--shard-size", type=int, default=50)
    p.add_argument("--tower", default="efficientnet_lite0")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = flickr8k_slice(tmp, "train", a.images)
        stage(f"one process, 2 threads, {a.images} images")
        one = timed_embed(data, tmp / "one", a.tower, procs=1, threads=2, shard_size=a.shard_size)
        stage(f"two processes (torchrun), 1 thread each, {a.images} images")
        two = timed_embed(data, tmp / "two", a.tower, procs=2, threads=1, shard_size=a.shard_size)
        n_files, differ, worst = compare(tmp / "one", tmp / "two")
    figures = {"images": a.images, "shard_size": a.shard_size, "tower": a.tower,
               "one_process": {"threads": 2, "wall_s": round(one, 2), "images_per_s": round(a.images / one, 2)},
               "two_processes": {"threads": 1, "wall_s": round(two, 2), "images_per_s": round(a.images / two, 2)},
               "speedup": round(one / two, 3), "files_compared": n_files, "files_differing": differ,
               "npy_max_abs_diff": worst}
    print_table(f"littune embed, {a.images} Flickr8k train images, {a.tower} (CPU, start-up included)", [
        ("1 process x 2 threads: images/s", f"{a.images / one:.1f}", f"{one:.1f} s"),
        ("2 processes x 1 thread: images/s", f"{a.images / two:.1f}", f"{two:.1f} s"),
        ("speedup", f"{one / two:.2f}x", "two processes / one"),
        ("cache files differing", f"{len(differ)} of {n_files}", "manifest world_size aside"),
        ("largest feature difference", f"{worst:.3g}", "stored float16"),
    ])
    print_json(figures)


if __name__ == "__main__":
    main()
