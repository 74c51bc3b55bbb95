"""Start-up time of the command line: how long a user waits before any work, and where it goes.

    python benchmarks/bench_startup.py [--model runs/demo/latest] [--index flowers.index]
                                       [--before OTHER_CHECKOUT] [--repeat 3]

Each command runs in a fresh process (``python -m littune ...``), ``--repeat`` times; the table gives
the best wall time and the CPU time (user + system) of that run. On a shared machine the CPU time
is the steadier figure: wall time includes waiting for a core. With ``--before DIR`` (another
checkout of littune, e.g. ``git worktree add /tmp/before <commit>``) every command also runs with
that tree first on ``sys.path``, for a before/after table. A breakdown of ``classify`` follows, in one
process: the imports (torch, torchvision, timm, transformers, littune), loading the model and
classifying one image.

Goals (idle machine, this 2-core one): ``littune --help`` and ``littune towers`` under 1 s, ``classify``
of one image with a trained model under 3 s end to end. The last line is JSON with every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, print_json, print_table, stage  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
IMAGE = SHARED / "flowers" / "test" / "roses" / "10090824183_d02c613f10_m.jpg"
LABELS = "daisy,dandelion,rose,sunflower,tulip"

# One process, the steps of `littune classify` in order, each timed (wall and CPU).
_BREAKDOWN = r"""
import json, sys, time
marks, t0, c0 = [], time.perf_counter(), time.process_time()
def mark(name):
    global t0, c0
    t, c = time.perf_counter(), time.process_time()
    marks.append([name, round(t - t0, 3), round(c - c0, 3)]); t0, c0 = t, c
import torch; mark("import torch")
import torchvision; mark("import torchvision (timm needs it; pulls in torch._dynamo)")
import timm; mark("import timm")
import transformers; mark("import transformers")
import littune.cli, littune.infer.model; mark("import littune (cli, infer)")
from littune.progress import quiet_third_party_bars; quiet_third_party_bars()
lit = littune.infer.model.load(sys.argv[1]); mark("load the model (towers built, weights read)")
lit.classify([sys.argv[2]], sys.argv[3]); mark("classify one image")
print("BREAKDOWN " + json.dumps(marks))
"""


def run(argv: list[str], tree: Path) -> tuple[float, float, str]:
    """(wall s, CPU s of the child, stdout) of one fresh process with ``tree`` first on sys.path."""
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, *argv], cwd=tree, env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} (in {tree}) failed:\n{r.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, r.stdout


def best(argv: list[str], tree: Path, repeat: int) -> tuple[float, float]:
    runs = [run(argv, tree)[:2] for _ in range(repeat)]
    return min(runs)  # the least disturbed run: its wall time and its CPU time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / "runs" / "demo" / "latest"),
                    help="a trained run or export for classify (default: runs/demo/latest; skipped when absent)")
    ap.add_argument("--index", default=None, help="an index for search (default: search is not timed)")
    ap.add_argument("--before", default=None, metavar="DIR", help="another littune checkout to compare against")
    ap.add_argument("--repeat", type=int, default=3, help="runs per command; the best is kept (default 3)")
    a = ap.parse_args()

    model = Path(a.model).resolve()
    commands = {"littune --help": ["-m", "littune", "--help"], "littune towers": ["-m", "littune", "towers"]}
    if (model / "config.yaml").is_file():
        commands["littune classify (1 image, 5 labels)"] = ["-m", "littune", "classify", "--model", str(model),
                                                            str(IMAGE), "--labels", LABELS]
    if a.index:
        commands["littune search (k=10)"] = ["-m", "littune", "search", "--index", str(Path(a.index).resolve()),
                                             "a red rose"]
    floors = {"python -c 'import torch'": ["-c", "import torch"],
              "python -c 'import timm'": ["-c", "import timm"],
              "python -c 'import transformers'": ["-c", "import transformers"]}

    trees = {"after": REPO} | ({"before": Path(a.before).resolve()} if a.before else {})
    figures: dict = {"repeat": a.repeat, "cpus": os.cpu_count(), "load_avg": os.getloadavg()[0],
                     "model": str(model) if "littune classify (1 image, 5 labels)" in commands else None}
    rows = []
    for name, argv in commands.items():
        cells = {}
        for label, tree in trees.items():
            stage(f"{name} ({label}), best of {a.repeat}")
            wall, cpu = best(argv, tree, a.repeat)
            cells[label] = (wall, cpu)
            figures[f"{name} [{label}]"] = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}
        after = f"{cells['after'][0]:.2f} s (cpu {cells['after'][1]:.2f} s)"
        before = f"before {cells['before'][0]:.2f} s (cpu {cells['before'][1]:.2f} s)" if "before" in cells else ""
        rows.append((name, after, before))
    for name, argv in floors.items():
        stage(f"{name}, best of {a.repeat}")
        wall, cpu = best(argv, REPO, a.repeat)
        figures[name] = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}
        rows.append((name, f"{wall:.2f} s (cpu {cpu:.2f} s)", "the floor: a library every classify needs"))
    if figures["model"]:
        stage("classify, step by step in one process")
        out = run(["-c", _BREAKDOWN, str(model), str(IMAGE), LABELS], REPO)[2]
        marks = next(line for line in out.splitlines() if line.startswith("BREAKDOWN "))
        figures["classify_breakdown"] = json.loads(marks[len("BREAKDOWN "):])
        rows += [(f"  {n}", f"{w:.2f} s (cpu {c:.2f} s)", "classify breakdown") for n, w, c in figures["classify_breakdown"]]
    print_table(f"bench_startup (best of {a.repeat}; load average {figures['load_avg']:.1f} on {os.cpu_count()} cores)",
                rows)
    print_json(figures)


if __name__ == "__main__":
    main()
