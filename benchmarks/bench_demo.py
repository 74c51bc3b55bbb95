"""The demo as a newcomer meets it: a cold `make demo` (fresh virtual environment, empty embedding
caches), then the same command again warm, each timed as `make demo` prints it.

    python benchmarks/bench_demo.py              # cold (install + embed + train + evaluate), then warm
    python benchmarks/bench_demo.py --no-install # reuse .venv: the cold run embeds, but installs nothing
    python benchmarks/bench_demo.py --no-install --variant warm-venv-epyc  # another machine: its own file

The cold run installs into a new virtual environment under --work (`make demo VENV=...`, as on a
fresh clone: pip from this machine's package sources) and points the caches at an empty folder
(LITTUNE_CACHE_DIR). Both runs write their run folder under runs/demo (so `runs/demo/latest` is the
warm run's model afterwards, for bench_startup and the README's examples). Figures: each run's
metrics and phases from its `demo.json`, and the wall time of the whole `make demo` as a person
waits for it. Time it on an idle machine: the embedding phase is bounded by the CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import REPO, SHARED, print_json, print_table, stage  # noqa: E402

BARS = {"i2t_r1": 0.335, "t2i_r1": 0.240, "flowers_zeroshot_top1": 0.42, "cold_make_demo_min": 8.0}


def make_demo(venv: Path, cache: Path, out: Path) -> dict:
    """One `make demo` into ``venv`` with its caches in ``cache``; its demo.json plus the wall time."""
    env = {**os.environ, "LITTUNE_CACHE_DIR": str(cache)}
    before = set(out.glob("lit-*")) if out.is_dir() else set()
    t0 = time.time()
    cmd = ["make", "--no-print-directory", "demo", f"VENV={venv}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=None)
    wall = time.time() - t0
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}")
    new = sorted(set(out.glob("lit-*")) - before)
    if not new:
        sys.exit(f"make demo wrote no run under {out}")
    record = json.loads((new[-1] / "demo.json").read_text())
    record["make_demo_wall_s"] = round(wall, 1)
    record["printed"] = proc.stdout.strip().splitlines()
    return record


def figures_of(r: dict) -> dict:
    return {"flickr8k_test": r["flickr8k_test"], "flowers_zeroshot_top1": r["flowers_zeroshot_top1"],
            "flowers_probe_top1": r["flowers_probe_top1"], "temperature": r["temperature"],
            "steps": r["steps"], "text_tower": r["text_tower"], "littune_demo_wall_s": r["wall_s"],
            "make_demo_wall_s": r["make_demo_wall_s"], "phases_s": r["phases_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-install", action="store_true", help="use the project's .venv (no install is timed)")
    ap.add_argument("--work", default=None, help="scratch folder for the new venv and caches (default: temporary)")
    ap.add_argument("--variant", default=None,
                    help="results file suffix (default: warm-venv with --no-install, else none): another machine's "
                         "run beside the README's, e.g. --variant warm-venv-epyc")
    a = ap.parse_args()
    data = SHARED  # where `make demo` reads its data
    if not (data / "flickr8k").is_dir() or not (data / "flowers").is_dir():
        sys.exit(f"{data}: needs flickr8k/ and flowers/ (the demo's data, which `make demo` reads there)")
    work = Path(a.work or tempfile.mkdtemp(prefix="littune-bench-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    venv = REPO / ".venv" if a.no_install else work / "venv"
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    out = REPO / "runs" / "demo"
    stage(f"cold make demo (venv {venv}, empty caches {cache})")
    cold = make_demo(venv, cache, out)
    stage("warm make demo (same venv and caches)")
    warm = make_demo(venv, cache, out)
    figures = {"cold": figures_of(cold), "warm": figures_of(warm), "install_timed": not a.no_install,
               "bars": BARS}
    table = []
    for name, r in (("cold", cold), ("warm", warm)):
        f = r["flickr8k_test"]
        phases = ", ".join(f"{k} {v / 60:.1f}" for k, v in r["phases_s"].items() if v is not None)
        table += [(f"{name}: make demo wall", f"{r['make_demo_wall_s'] / 60:.1f} min", f"phases (min): {phases}"),
                  (f"{name}: Flickr8k test R@1 i2t / t2i", f"{f['i2t_r1']:.3f} / {f['t2i_r1']:.3f}",
                   f"bars {BARS['i2t_r1']} / {BARS['t2i_r1']}"),
                  (f"{name}: flowers zero-shot / probe",
                   f"{r['flowers_zeroshot_top1']:.3f} / {r['flowers_probe_top1']:.3f}",
                   f"bar {BARS['flowers_zeroshot_top1']}")]
    print_table(f"bench_demo ({os.cpu_count()} cpus, install {'timed' if not a.no_install else 'not timed'})", table)
    print_json(figures, variant=a.variant if a.variant is not None else ("warm-venv" if a.no_install else ""))
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
