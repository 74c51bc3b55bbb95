"""Benchmark scaling: batch size, the gradient cache, several processes, and matmul efficiency.

    python benchmarks/bench_scale.py [--quick]

Trains the default model (locked ``efficientnet_lite0`` features from an embedding cache, the
``minilm`` text tower unlocked) on Flickr8k's real training captions. The cache holds random
float16 features of the tower's size (1280), one row per caption (30,000): the image features do
not change speed or memory, and one row per caption makes batches up to 16,384 possible (the
schedule never repeats a row in a batch). Each configuration runs in a fresh process, so the peak
resident memory (``ru_maxrss``) of one does not mix with another's.

Each process uses ``--threads`` torch threads (default 1: on this shared 2-core machine, with
another training job running, a step with 2 OpenMP threads was 10x slower than with 1, because
spinning threads collapse when cores are oversubscribed; use ``--threads 0`` on a dedicated machine).
Each configuration warms up with one step on the first rows of its batch, then times 1-5 steps.

Prints a table and, as its last line, a JSON object:
  rows                 per configuration: batch, grad_cache_chunk, processes, precision, threads,
                       examples_per_s, step_s, peak_rss_gib (summed over processes)
  max_batch            the largest batch trained (16,384, with the gradient cache of 256-row chunks);
                       peak_rss_gib its peak memory
  examples_per_s_1proc / examples_per_s_2proc   one process vs two (torchrun, gloo), the same
                       global batch and threads per process; speedup_2proc their ratio
  matmul_gflops_fp32 / _bf16   a 2048x2048 matmul with the same threads as one training process
  mfu_fp32 / mfu_bf16  training step FLOP/s / matmul FLOP/s of the same precision, with the step's
                       FLOPs counted as 6 x (text tower linear-layer parameters) x (tokens after
                       padding: the tower trims padding per length bucket, counted as it runs)
Nothing is asserted: memory and speed are measured.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, print_json, print_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TAG = "BENCH_SCALE_RESULT "
GiB = 1024 ** 3


# ---- the cache: random features of the default tower's size, real captions ------------------------

def make_cache(folder: Path) -> Path:
    """An embedding cache the default tower accepts: its identity, random features, real captions."""
    import numpy as np

    from littune.cache.items import ImageItem
    from littune.cache.manifest import Manifest
    from littune.cache.verify import bad_file
    from littune.cache.writer import save_atomic, save_npy, _write_metadata, finalize
    from littune.data.images import BadInputLog
    from littune.data.flickr8k import Flickr8k
    from littune.towers import create_image_tower

    if (folder / "manifest.json").is_file() and Manifest.read(folder).complete:
        return folder
    tower = create_image_tower("efficientnet_lite0")  # identity only (name, fingerprint, preprocessing)
    items = [ImageItem(f"{r.key}#cap", str(r.image), [r.caption]) for r in Flickr8k(SHARED / "flickr8k", "train")]
    n = len(items)
    m = Manifest(tower=tower.name, fingerprint=tower.fingerprint(), preprocess=tower.preprocess.to_dict(),
                 embed_dim=tower.embed_dim, dtype="float16", source="bench_scale:random-features+flickr8k-captions",
                 shard_size=n, n_items=n, n_captions=n)
    folder.mkdir(parents=True, exist_ok=True)
    m.write(folder)
    feats = np.random.default_rng(0).standard_normal((n, tower.embed_dim), dtype=np.float32).astype(np.float16)
    _write_metadata(folder / "metadata" / "metadata_0.parquet", items)
    save_atomic(folder / "img_emb" / "img_emb_0.npy", lambda p: save_npy(p, feats))
    save_atomic(folder / bad_file(0), lambda p: BadInputLog().write(p))  # none skipped: random features
    finalize(folder, m)
    return folder


# ---- matmul throughput -------------------------------------------------------------------------------

def matmul_gflops(dtype_name: str, n: int = 2048, repeat: int = 5) -> float:
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


# ---- one configuration, in its own process (or processes, under torchrun) --------------------------------

def linear_params(module) -> int:
    import torch

    return sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Linear))


def padded_tokens(text_tower, mask) -> int:
    """Token positions the tower computes: per length bucket, rows x the bucket's longest caption."""
    import torch

    lengths = mask.sum(1)
    B, k = lengths.shape[0], text_tower.length_buckets
    if k < 2 or B < 4 * k:
        return int(B * mask.shape[1])
    order = torch.argsort(lengths, stable=True)
    return int(sum(len(c) * int(lengths[c].max()) for c in order.tensor_split(k)))


def _freeze_unused_pooler() -> None:
    """Work around a trainer bug under torchrun: the HF text towers' pooler (BERT's ``pooler.dense``)
    is trainable but never used (littune pools the hidden states itself), so DDP stops at the second
    step waiting for its gradients. Freezing it changes nothing else: AdamW skips parameters without
    gradients anyway."""
    from littune.model import ModelConfig

    build = ModelConfig.build

    def build_frozen(self, *args, **kwargs):
        model = build(self, *args, **kwargs)
        pooler = getattr(getattr(model.text, "model", None), "pooler", None)
        if pooler is not None:
            pooler.requires_grad_(False)
        return model

    ModelConfig.build = build_frozen


def worker(spec: dict) -> None:
    import torch

    from littune import distributed
    from littune.train import Trainer, load_config

    distributed.init_from_env()
    rank, world = distributed.rank(), distributed.world_size()
    _freeze_unused_pooler()
    cfg = load_config(None, [
        f"data.train_cache={spec['cache']}", f"train.out_dir={spec['out']}", f"train.batch_size={spec['batch']}",
        f"train.grad_cache_chunk={spec['chunk']}", f"train.precision={spec['precision']}",
        f"train.threads={spec['threads']}", "train.steps=1000000", "train.ckpt_every=0", "train.log_every=1000000",
        "train.progress=false"])
    tr = Trainer(cfg)
    text = tr.model.text
    # Warm-up (allocator, kernels, tokenizer): one step on the first ``warmup`` rows of the batch.
    first = tr.batches(0)
    w = min(len(first["captions"]), spec["warmup"] // world)
    tr.train_step({"image_features": first["image_features"][:w], "captions": first["captions"][:w]})
    tokens, seconds = 0, 0.0
    for step in range(1, spec["steps"] + 1):
        distributed.barrier()
        t0 = time.perf_counter()
        batch = tr.batches(step)
        tr.train_step(batch)
        seconds += time.perf_counter() - t0
        mask = text.tokenizer(batch["captions"])["attention_mask"]
        chunk = spec["chunk"] or len(batch["captions"])
        tokens += sum(padded_tokens(text, mask[i:i + chunk]) for i in range(0, mask.shape[0], chunk))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    figures = torch.tensor([float(rss), float(tokens), seconds], dtype=torch.float64)
    if world > 1:
        import torch.distributed as dist

        gathered = [torch.zeros_like(figures) for _ in range(world)]
        dist.all_gather(gathered, figures)
        rss = sum(int(g[0]) for g in gathered)
        tokens = sum(int(g[1]) for g in gathered)
        seconds = max(float(g[2]) for g in gathered)
    if rank == 0:
        step_s = seconds / spec["steps"]
        flops = 6 * linear_params(text) * tokens / spec["steps"]  # per global step, forward + backward
        print(TAG + json.dumps({
            "batch": spec["batch"], "grad_cache_chunk": spec["chunk"], "processes": world,
            "precision": spec["precision"], "threads": torch.get_num_threads(), "steps": spec["steps"],
            "step_s": step_s, "examples_per_s": spec["batch"] / step_s, "peak_rss_gib": rss / GiB,
            "tokens_per_step": tokens / spec["steps"], "text_linear_params": linear_params(text),
            "text_gflops_per_step": flops / 1e9, "achieved_gflops": flops / step_s / 1e9}), flush=True)
    distributed.barrier()


def run_config(work: Path, cache: Path, batch: int, chunk: int, steps: int, warmup: int, threads: int,
               precision: str = "fp32", processes: int = 1) -> dict:
    """``threads`` per process (0: all cores, shared between the processes)."""
    name = f"b{batch}_c{chunk}_{precision}_p{processes}"
    if processes > 1 and threads == 0:
        threads = max(1, (os.cpu_count() or 1) // processes)
    spec = {"cache": str(cache), "out": str(work / "runs" / name), "batch": batch, "chunk": chunk,
            "precision": precision, "steps": steps, "threads": threads, "warmup": warmup}
    script = [str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if processes > 1:
        env["OMP_NUM_THREADS"] = str(threads)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               *script]
    else:
        cmd = [sys.executable, *script]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [line for line in r.stdout.splitlines() if line.startswith(TAG)]
    if r.returncode != 0 or not lines:
        raise RuntimeError(f"{name} failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
    row = json.loads(lines[-1][len(TAG):])
    print(f"  {name}: {row['examples_per_s']:.1f} ex/s, {row['step_s']:.2f} s/step, "
          f"peak {row['peak_rss_gib']:.2f} GiB ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer batch sizes, 1-2 timed steps each")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads per process (0: all cores). Default 1: on a machine shared with "
                         "another job, spinning OpenMP threads collapse (measured 10x slower with 2 threads)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # tiny batches: checks the script runs
    a = ap.parse_args()
    if a.worker:
        return worker(json.loads(a.worker))
    if not (SHARED / "flickr8k").is_dir():
        sys.exit(f"needs {SHARED}/flickr8k (the shared data)")
    import torch

    work = Path(a.work or tempfile.mkdtemp(prefix="littune-scale-"))
    cache = make_cache(work / "cache")
    torch.set_num_threads(a.threads or os.cpu_count() or 1)  # the matmul with the steps' thread count
    gflops = {p: matmul_gflops(p) for p in ("float32", "bfloat16")}

    # mid: the batch of the 1-vs-2-process and fp32-vs-bf16 comparisons.
    chunk = 256
    if a.smoke:
        with_gc, without_gc, mid, warmup, chunk = [64], [64], 64, 32, 32
    elif a.quick:  # about 15 minutes on 2 busy cores, most of it the one 16,384 step
        with_gc, without_gc, mid, warmup = [256, 1024, 4096, 16384], [256, 1024], 1024, 256
    else:
        with_gc, without_gc, mid, warmup = [256, 1024, 2048, 4096, 8192, 16384], [256, 1024, 2048, 4096], 1024, 1024

    def steps(batch: int) -> int:
        if a.smoke:
            return 1
        if a.quick:
            return 2 if batch <= 1024 else 1
        return 5 if batch <= 1024 else 3 if batch <= 4096 else 2

    rows = []
    for b in without_gc:
        rows.append(run_config(work, cache, b, 0, steps(b), warmup, a.threads))
    for b in with_gc:
        rows.append(run_config(work, cache, b, chunk, steps(b), warmup, a.threads))
    one = next(r for r in rows if r["batch"] == mid and r["grad_cache_chunk"] == 0)
    two = run_config(work, cache, mid, 0, steps(mid), warmup, a.threads, processes=2)
    bf16 = run_config(work, cache, mid, 0, steps(mid), warmup, a.threads, precision="bf16")
    rows += [two, bf16]

    biggest = max((r for r in rows if r["processes"] == 1), key=lambda r: (r["batch"], r["grad_cache_chunk"] > 0))
    figures = {
        "rows": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
        "max_batch": biggest["batch"],
        "max_batch_grad_cache_chunk": biggest["grad_cache_chunk"],
        "peak_rss_gib": round(biggest["peak_rss_gib"], 2),
        "examples_per_s_1proc": round(one["examples_per_s"], 1),
        "examples_per_s_2proc": round(two["examples_per_s"], 1),
        "speedup_2proc": round(two["examples_per_s"] / one["examples_per_s"], 2),
        "matmul_gflops_fp32": round(gflops["float32"], 1),
        "matmul_gflops_bf16": round(gflops["bfloat16"], 1),
        "step_gflops_fp32": round(one["achieved_gflops"], 1),
        "step_gflops_bf16": round(bf16["achieved_gflops"], 1),
        "mfu_fp32": round(one["achieved_gflops"] / gflops["float32"], 3),
        "mfu_bf16": round(bf16["achieved_gflops"] / gflops["bfloat16"], 3),
        "mfu_batch": mid,
        "text_linear_params": one["text_linear_params"],
        "threads_per_process": one["threads"],
        "cpus": os.cpu_count(),
        "quick": a.quick,
    }
    table = []
    for r in rows:
        what = (f"batch {r['batch']:>5}, " + (f"grad cache {r['grad_cache_chunk']}" if r["grad_cache_chunk"]
                                            else "no grad cache") + f", {r['processes']} proc, {r['precision']}")
        table.append((what, f"{r['examples_per_s']:.1f} ex/s, {r['peak_rss_gib']:.2f} GiB",
                      f"{r['step_s']:.2f} s/step, {r['steps']} step(s)"))
    table += [
        ("max batch (grad cache) / its peak RSS", f"{biggest['batch']} / {biggest['peak_rss_gib']:.2f} GiB", ""),
        (f"examples/s at {mid}: 1 proc / 2 procs (x {one['threads']} / {two['threads']} threads)",
         f"{one['examples_per_s']:.1f} / {two['examples_per_s']:.1f}", "torchrun, gloo"),
        ("matmul 2048^2 GFLOP/s fp32 / bf16", f"{gflops['float32']:.1f} / {gflops['bfloat16']:.1f}",
         f"{torch.get_num_threads()} thread(s), as one training process"),
        (f"MiniLM step GFLOP/s fp32 / bf16 (batch {mid})",
         f"{one['achieved_gflops']:.1f} / {bf16['achieved_gflops']:.1f}", "6 x linear params x padded tokens"),
        ("fraction of matmul throughput fp32 / bf16", f"{figures['mfu_fp32']:.2f} / {figures['mfu_bf16']:.2f}", ""),
    ]
    from littune.cache.manifest import Manifest

    print_table(f"bench_scale ({'smoke' if a.smoke else 'quick' if a.quick else 'full'}; {os.cpu_count()} cpus, "
                f"{Manifest.read(cache).count} cached rows, MiniLM text tower)", table)
    print_json(figures)


if __name__ == "__main__":
    main()
