"""Benchmark training on caches of 0.1M, 1M and 10M rows: does a step cost more as the cache grows?

    python benchmarks/bench_cache_scale.py --rows 100000,1000000            # ~3 GB of disk, minutes
    python benchmarks/bench_cache_scale.py --work /big/disk/scale           # + 10M rows: 25.6 GB, an hour+

For each N it writes a synthetic cache with ``littune cache synth`` (the format ``littune embed``
writes: 1280-d float16 features of ``efficientnet_lite0``'s width, shards of 4,096 rows, generated
captions, 1 to 3 per image), then runs ``littune train`` on it for ``--steps`` steps, each in its own
process, once per sampling mode:
  uniform   rows drawn from the whole cache (data.shuffle_buffer=0: memory-mapped random reads)
  buffer    data.shuffle_buffer=K shards read whole, in a shuffled order (docs/caches.md)
The text tower is a small scratch transformer by default (``--model tiny``): its step is cheap, so
what the data path costs shows; ``--model minilm`` trains the default recipe's tower instead.

Prints a table and, as its last line, a JSON object:
  machine             CPU model, cores, ISA flags, library versions (benchmarks/common.py)
  rows                per N: write_s (features, metadata, manifest with every file's SHA-256),
                      bytes_on_disk, open_s (EmbeddingCache(): every shard's header checked) and
                      counts_s (captions per image from the Arrow column: what the trainer reads at
                      start), captions_arrow_mib / captions_lists_mib (every caption held as Arrow
                      arrays / as Python lists, by RSS growth; lists measured up to --lists-max rows),
                      and per mode: examples_per_s (training steps only), setup_s, peak_rss_gib
  vs_smallest         per mode, at the largest N: examples/s ratio and peak RSS difference (GiB)
                      against the smallest N (the goal: ratio >= 0.9, difference <= 1 GiB)
The page cache is not dropped between runs (that needs root): a cache that fits in memory is read
from it after being written; one of 25.6 GB on a 24 GiB machine cannot be.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_json, print_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TAG = "BENCH_CACHE_SCALE "
GiB, MiB = 1024 ** 3, 1024 ** 2
MODELS = {
    "tiny": ["model.text.name=scratch", "model.text.tokenizer=minilm", "model.text.width=128", "model.text.depth=2",
             "model.text.heads=2", "model.text.context_length=32", "model.text.lock=u"],
    "minilm": [],  # the default config's text tower
}


def machine() -> dict:
    try:
        from common import machine_info  # the shared record of the machine, where this checkout has it
    except ImportError:  # older common.py: the essentials
        import platform

        flags = next((ln.split(":", 1)[1].split() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                      if ln.startswith("flags")), [])
        model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                      if ln.startswith("model name")), platform.processor())
        return {"cpu": model, "cores": os.cpu_count(), "isa": sorted(f for f in flags if f.startswith(("avx", "amx", "fma"))),
                "python": platform.python_version()}
    return machine_info()


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _worker_run(spec: dict) -> dict:
    """In this process (run as a child): one measurement, its figures and its peak RSS."""
    if spec["what"] == "train":
        from littune.cli import main

        code = main(["train", *spec["overrides"]])
        if code:
            raise SystemExit(code)
        summary = json.loads((Path(spec["out"]) / "summary.json").read_text())
        fig = {"examples_per_s": spec["steps"] * spec["batch"] / summary["train_s"], "train_s": summary["train_s"],
               "setup_s": summary["setup_s"]}
    else:  # open the cache, count captions, then hold every caption as Arrow, then as Python lists
        from littune.cache import EmbeddingCache

        def rss() -> int:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

        t0 = time.perf_counter()
        cache = EmbeddingCache(spec["cache"])
        opened = time.perf_counter()
        cache.captions.counts()
        fig = {"open_s": opened - t0, "counts_s": time.perf_counter() - opened}
        before = rss()
        col = cache.captions
        for s in range(len(col.shards)):
            col._shard(s)
        fig.update(captions_arrow_mib=(rss() - before) / MiB, captions_arrow_nbytes_mib=col.nbytes() / MiB)
        if spec["lists"]:
            before = rss()
            lists = list(col)
            fig["captions_lists_mib"] = (rss() - before) / MiB
            del lists
    fig["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GiB
    return fig


def child(spec: dict) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith(TAG)]
    if r.returncode or not lines:
        raise RuntimeError(f"{spec['what']} failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
    return json.loads(lines[-1][len(TAG):])


def write_cache(folder: Path, rows: int, shard_size: int) -> dict:
    if (folder / "manifest.json").is_file():
        print(f"  reusing {folder} (its write time is not measured again)", file=sys.stderr)
        return {"write_s": None, "bytes": sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "littune", "cache", "synth", "--rows", str(rows), "--out", str(folder),
                        "--shard-size", str(shard_size), "--max-captions", "3"],
                       env=_env(), capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"littune cache synth failed:\n{r.stderr[-3000:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    return {"write_s": out["write_s"], "write_wall_s": time.perf_counter() - t0, "bytes": out["bytes"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="100000,1000000,10000000", help="comma-separated cache sizes")
    ap.add_argument("--steps", type=int, default=100, help="training steps timed per run")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--shuffle-buffer", type=int, default=64, help="shards in the buffer of the 'buffer' mode")
    ap.add_argument("--modes", default="uniform,buffer")
    ap.add_argument("--model", default="tiny", choices=sorted(MODELS))
    ap.add_argument("--shard-size", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the training process (0: all cores)")
    ap.add_argument("--lists-max", type=int, default=1_000_000, help="measure Python lists of captions up to this N")
    ap.add_argument("--work", default=None, help="scratch folder, on a disk with room (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the caches (default: each is deleted after its N)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(TAG + json.dumps(_worker_run(json.loads(a.worker))), flush=True)
        return
    ns = [int(float(x)) for x in a.rows.split(",")]
    modes = a.modes.split(",")
    work = Path(a.work or tempfile.mkdtemp(prefix="littune-cache-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    need = max(ns) * (1280 * 2 + 128) * 1.05
    free = shutil.disk_usage(work).free
    if need > free:
        sys.exit(f"{work}: {free / 1e9:.1f} GB free, the {max(ns):,}-row cache needs about {need / 1e9:.1f} GB "
                 "(use --work on a bigger disk)")
    results = []
    for n in ns:
        folder = work / f"cache_{n}"
        print(f"[{time.strftime('%H:%M:%S')}] {n:,} rows: writing {folder}", file=sys.stderr, flush=True)
        row = {"n": n, **write_cache(folder, n, a.shard_size)}
        row["bytes_on_disk"] = row.pop("bytes")
        row.update(child({"what": "open", "cache": str(folder), "lists": n <= a.lists_max}))
        row["open_peak_rss_gib"] = row.pop("peak_rss_gib")
        for mode in modes:
            out = work / f"run_{n}_{mode}"
            shutil.rmtree(out, ignore_errors=True)
            overrides = [*MODELS[a.model], f"data.train_cache={folder}", f"train.out_dir={out}",
                         f"train.steps={a.steps}", f"train.batch_size={a.batch}", f"train.threads={a.threads}",
                         "train.ckpt_every=0", f"train.log_every={a.steps}", "train.progress=false",
                         "optim.warmup_steps=10", f"data.shuffle_buffer={a.shuffle_buffer if mode == 'buffer' else 0}"]
            print(f"[{time.strftime('%H:%M:%S')}]   train {a.steps} steps ({mode})", file=sys.stderr, flush=True)
            row[mode] = child({"what": "train", "overrides": overrides, "out": str(out), "steps": a.steps,
                               "batch": a.batch})
            shutil.rmtree(out, ignore_errors=True)
        results.append(row)
        print(f"  {json.dumps(row)}", file=sys.stderr, flush=True)
        if not a.keep:
            shutil.rmtree(folder, ignore_errors=True)
    small, big = results[0], results[-1]
    figures = {
        "machine": machine(), "model": a.model, "steps": a.steps, "batch": a.batch, "shuffle_buffer": a.shuffle_buffer,
        "shard_size": a.shard_size, "threads": a.threads,
        "rows": [{k: (round(v, 4) if isinstance(v, float) else
                      {kk: round(vv, 4) for kk, vv in v.items()} if isinstance(v, dict) else v) for k, v in r.items()}
                 for r in results],
        "vs_smallest": {m: {"n": big["n"], "examples_per_s_ratio": round(big[m]["examples_per_s"] / small[m]["examples_per_s"], 3),
                            "peak_rss_diff_gib": round(big[m]["peak_rss_gib"] - small[m]["peak_rss_gib"], 3)}
                        for m in modes},
    }
    table = []
    for r in results:
        table.append((f"{r['n']:,} rows: write / open / size", f"{r['write_s'] or 0:.1f} s / {r['open_s']:.2f} s / "
                      f"{r['bytes_on_disk'] / 1e9:.2f} GB", f"captions: Arrow {r['captions_arrow_mib']:.0f} MiB, "
                      f"lists {r.get('captions_lists_mib', float('nan')):.0f} MiB"))
        for m in modes:
            table.append((f"  {m}", f"{r[m]['examples_per_s']:.0f} ex/s, {r[m]['peak_rss_gib']:.2f} GiB",
                          f"setup {r[m]['setup_s']:.1f} s"))
    for m, v in figures["vs_smallest"].items():
        table.append((f"{m}: {v['n']:,} vs {small['n']:,} rows", f"x{v['examples_per_s_ratio']:.2f} ex/s, "
                      f"{v['peak_rss_diff_gib']:+.2f} GiB", "goal: >= x0.90, <= +1 GiB"))
    print_table(f"bench_cache_scale ({a.model} text tower, batch {a.batch}, {a.steps} steps, {os.cpu_count()} cpus)", table)
    print_json(figures)


if __name__ == "__main__":
    main()
