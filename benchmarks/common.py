"""Helpers shared by the benchmark scripts: data slices, timing, tables, the final JSON line.

The final JSON line is also written as a results file, ``docs/results/<script>[-<variant>].json``,
with the machine it ran on and the exact command, so that every figure the documentation quotes
can be traced to a run (the docs render their tables from these files: docs/hooks/results.py).
``LITTUNE_RESULTS_DIR`` moves them elsewhere; ``LITTUNE_RESULTS_DIR=`` (empty) writes none.
"""
from __future__ import annotations

import csv
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
RESULTS = REPO / "docs" / "results"
# CPU features that decide which precision and engine are fast (bf16 is emulated without the last four).
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
ENGINES = ("torch", "torchvision", "timm", "transformers", "openvino", "onnxruntime", "faiss-cpu", "littune")


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


def _cpuinfo() -> tuple[str | None, set[str]]:
    """The CPU's model name and ISA flags from /proc/cpuinfo (Linux; elsewhere platform's guess)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or None, set()
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model is None:
            model = value.strip()
        elif key.strip() in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model, flags


def machine_info() -> dict:
    """What a figure depends on: CPU, cores this process may use, ISA flags, library versions, date."""
    model, flags = _cpuinfo()
    versions = {}
    for name in ENGINES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {"cpu": model, "arch": platform.machine(), "cores": cores, "cpu_count": os.cpu_count(),
            "isa": {f: f in flags for f in ISA_FLAGS}, "python": platform.python_version(),
            "versions": versions, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "load_avg_1_5_15": load, "commit": commit, "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def command_line(argv: list[str] | None = None) -> str:
    """The command that ran, as one could type it again from the repository root."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]).resolve()
    try:
        argv[0] = str(script.relative_to(REPO))
    except ValueError:
        pass
    return "python " + " ".join(shlex.quote(a) for a in argv)


def results_path(variant: str = "", argv: list[str] | None = None) -> Path | None:
    """docs/results/<script>[-<variant>].json (``--quick`` runs get the variant ``quick``); None: off."""
    argv = sys.argv if argv is None else argv
    where = os.environ.get("LITTUNE_RESULTS_DIR")
    if where == "":
        return None
    if not variant and "--quick" in argv:
        variant = "quick"
    stem = Path(argv[0]).stem
    stem = "study" if stem == "run_study" else stem  # run_study.py CONFIG -> study-<config name>
    name = stem + (f"-{variant}" if variant else "")
    return (Path(where) if where else RESULTS) / f"{name}.json"


def write_results(figures: dict, variant: str = "", notes: str | None = None) -> Path | None:
    """Write the figures with the machine and the command (the one format the docs render from)."""
    path = results_path(variant)
    if path is None:
        return None
    record = {"benchmark": Path(sys.argv[0]).stem, "variant": variant or None, "command": command_line(),
              "machine": machine_info(), "notes": notes, "figures": figures}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    tmp.replace(path)
    print(f"results: {path}", file=sys.stderr)
    return path


def print_json(figures: dict, variant: str = "", notes: str | None = None) -> None:
    """The last line of every benchmark, also written as its results file (write_results)."""
    write_results(figures, variant, notes)
    print(json.dumps(figures))
