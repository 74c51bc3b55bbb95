"""Benchmark the distributed sigmoid loss: all-gather (local rows) against the ring (text chunks passed
between processes), peak memory and step time of the loss's forward and backward.

    python benchmarks/bench_ring_loss.py [--local-batch 2048] [--dim 256] [--procs 2 3] [--steps 3]

Each (processes, version) runs in a fresh ``torchrun --nproc_per_node P`` (gloo, CPU, one thread per
process), on random L2-normalised (b, E) image and text embeddings per process: only the loss is
measured, no towers. The all-gather version (``train.local_loss=true``: this process's b rows against
all n = P * b texts) holds (n, E) texts and (b, n) logits; the ring version (``train.ring_loss=true``)
holds (b, E) chunks and (b, b) blocks, so its memory should not grow with P.

Memory: the growth of each process's peak resident memory (``ru_maxrss``) over its loss steps, above
what it held before the first (torch, the inputs); the largest over the processes. Time: the fastest
step after the first (each step: forward + backward, with a barrier on both sides).
Prints a table and, as its last line, a JSON object: rows of {procs, version, local_batch, dim,
global_batch, peak_mib, step_s}, and per process count ring/all-gather ratios of both.
On a shared, busy machine the times are noisy; the memory is not.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import print_json, print_table, stage  # noqa: E402

VERSIONS = ("all_gather", "ring")


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker(version: str, b: int, dim: int, steps: int, out: str) -> None:
    """One process of one run: ``steps`` forward + backward passes of the loss; rank 0 writes the result."""
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    from littune import distributed
    from littune.losses import create_loss

    distributed.init_from_env()
    torch.set_num_threads(1)
    rank = distributed.rank()
    g = torch.Generator().manual_seed(rank)
    img = F.normalize(torch.randn(b, dim, generator=g), dim=-1).requires_grad_()
    txt = F.normalize(torch.randn(b, dim, generator=g), dim=-1).requires_grad_()
    scale = torch.tensor(10.0, requires_grad=True)
    bias = torch.tensor(-10.0, requires_grad=True)
    loss_fn = create_loss("sigmoid", local_loss=True, ring=version == "ring")
    dist.barrier()
    before, times = _rss_mib(), []
    for _ in range(steps):
        for t in (img, txt, scale, bias):
            t.grad = None
        dist.barrier()
        t0 = time.perf_counter()
        loss_fn(img, txt, scale, bias).backward()
        dist.barrier()
        times.append(time.perf_counter() - t0)
    grown = _rss_mib() - before
    per_rank = distributed.gather_objects({"grown_mib": grown, "times": times})
    if rank == 0:
        Path(out).write_text(json.dumps({
            "procs": distributed.world_size(), "version": version, "local_batch": b, "dim": dim,
            "global_batch": b * distributed.world_size(),
            "peak_mib": round(max(r["grown_mib"] for r in per_rank), 1),
            "step_s": round(min(max(r["times"][i] for r in per_rank) for i in range(1 if steps > 1 else 0, steps)), 4)}))
    distributed.barrier()


def run(procs: int, version: str, b: int, dim: int, steps: int, tmp: Path) -> dict:
    out = tmp / f"{procs}_{version}.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs), __file__,
           "--worker", version, "--local-batch", str(b), "--dim", str(dim), "--steps", str(steps), "--out", str(out)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"{procs} processes, {version}: {r.stderr[-2000:]}")
    return json.loads(out.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--local-batch", type=int, default=2048)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--procs", type=int, nargs="+", default=[2, 3])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--worker", choices=VERSIONS, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        return worker(a.worker, a.local_batch, a.dim, a.steps, a.out)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for procs in a.procs:
            for version in VERSIONS:
                stage(f"{procs} processes, {version}, local batch {a.local_batch}")
                rows.append(run(procs, version, a.local_batch, a.dim, a.steps, Path(tmp)))
    table = []
    ratios = {}
    for procs in a.procs:
        gathered, ring = (next(r for r in rows if r["procs"] == procs and r["version"] == v) for v in VERSIONS)
        for r in (gathered, ring):
            table.append((f"{procs} proc, {r['version']}: peak MiB / step s", f"{r['peak_mib']:.0f} / {r['step_s']:.3f}",
                          f"global batch {r['global_batch']}, local {r['local_batch']}"))
        ratios[str(procs)] = {"peak_ring_over_gather": round(ring["peak_mib"] / max(gathered["peak_mib"], 1e-9), 3),
                              "step_ring_over_gather": round(ring["step_s"] / gathered["step_s"], 3)}
    print_table(f"sigmoid loss across processes: all-gather vs ring (b={a.local_batch}, E={a.dim}, CPU gloo, "
                "1 thread per process)", table)
    print_json({"rows": rows, "ratios": ratios})


if __name__ == "__main__":
    main()
