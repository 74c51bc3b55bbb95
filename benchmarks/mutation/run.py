"""Mutation testing of littune's core: the share of small planted faults its tests notice, per module.

    python benchmarks/mutation/run.py                                   # every module in modules.toml
    python benchmarks/mutation/run.py --module littune/train/batches.py # one module (minutes)

For each module, a scratch copy of the package and the tests is made under ``build/mutation/``
(mutmut 3 reads its settings from the ``pyproject.toml`` of the folder it runs in and writes the
mutated tree to ``mutants/`` there, so the checkout is never touched), its ``[tool.mutmut]`` section
names the one module to mutate and the module's fast tests (``modules.toml``), and ``mutmut run``
tries every mutant against the tests that reach the mutated function. Then the per-module score
(killed / (mutants - reviewed equivalents), timeouts count as killed) is merged into the results
JSON with the machine, and each surviving mutant's change is printed and recorded.

Surviving mutants that no input can tell from the original are listed with the reason in
``equivalent.toml``; everything else that survives wants a test.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: mutmut brings `toml` there
    import toml as tomllib

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEFAULT_OUT = ROOT / "docs" / "results" / "mutation.json"
GOAL = 0.90
# What the docs show per module (the rest of a module's record goes to `details`).
FIGURES = ("mutants", "killed", "timeout", "survived", "equivalent", "score", "seconds", "measured")



def machine() -> dict:
    """The machine record every benchmark writes (benchmarks/common.py), plus the tools that decide
    which mutants exist and how they are tested."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.common import machine_info

    record = machine_info()
    for name in ("mutmut", "pytest", "numpy", "pillow", "scikit-learn", "fastapi", "starlette"):
        try:
            record["versions"][name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            record["versions"][name] = None
    return record


def load_modules() -> dict[str, list[str]]:
    data = tomllib.loads((HERE / "modules.toml").read_text())
    return {name: entry["tests"] for name, entry in data["modules"].items()}


def load_equivalents() -> list[dict]:
    data = tomllib.loads((HERE / "equivalent.toml").read_text())
    entries = data.get("equivalent", [])
    for i, e in enumerate(entries):
        missing = {"mutant", "change", "reason"} - set(e)
        if missing:
            raise SystemExit(f"{HERE / 'equivalent.toml'}: entry {i + 1} lacks {sorted(missing)}")
    return entries


def scratch_copy(module: str, tests: list[str], work: Path) -> Path:
    """A folder with the package, the tests and a pyproject.toml whose [tool.mutmut] names ``module``."""
    folder = work / re.sub(r"[^A-Za-z0-9]+", "_", module.removesuffix(".py"))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "littune", folder / "littune", ignore=ignore)
    shutil.copytree(ROOT / "tests", folder / "tests", ignore=ignore)
    project = (ROOT / "pyproject.toml").read_text()
    settings = {
        "source_paths": ["littune"],
        "only_mutate": [module],
        "pytest_add_cli_args": ["-p", "no:xdist", "-p", "no:cacheprovider", "-q", "-x"],
        "pytest_add_cli_args_test_selection": tests,
        # forked from a server that never imported torch: torch's threads do not survive a fork
        "process_isolation": "forkserver",
        "use_git_change_detection": False,  # the scratch folder is no git checkout
    }
    lines = ["", "[tool.mutmut]"] + [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    (folder / "pyproject.toml").write_text(project + "\n".join(lines) + "\n")
    return folder


def statuses(folder: Path, module: str) -> dict[str, str]:
    """Mutant name -> mutmut's status ("killed", "survived", "timeout", "no tests", ...)."""
    from mutmut.stats import status_by_exit_code

    meta = folder / "mutants" / (module + ".meta")
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return {name: status_by_exit_code[code] for name, code in codes.items()}


def change_of(folder: Path, env: dict, name: str) -> str:
    """The mutated line(s), as `mutmut show` prints them (the + lines of its diff)."""
    out = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=folder, env=env,
                         capture_output=True, text=True).stdout
    return "\n".join(line[1:].strip() for line in out.splitlines() if line.startswith("+") and not line.startswith("+++"))


def run_module(module: str, tests: list[str], work: Path, equivalents: list[dict], children: int) -> dict:
    folder = scratch_copy(module, tests, work)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # mutants/ must win over the checkout
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("LITTUNE_SHARED_DATA", str(ROOT.parent / "shared" / "data"))
    t0 = time.perf_counter()
    with open(folder / "mutmut.log", "w") as log:
        rc = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(children)],
                            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - t0
    if rc != 0:
        tail = (folder / "mutmut.log").read_text(errors="replace")[-2000:]
        raise SystemExit(f"mutmut failed on {module} (exit {rc}); log: {folder / 'mutmut.log'}\n{tail}")
    status = statuses(folder, module)
    counts: dict[str, int] = {}
    for s in status.values():
        counts[s] = counts.get(s, 0) + 1
    alive = sorted(n for n, s in status.items() if s not in ("killed", "timeout"))
    changes = {n: change_of(folder, env, n) for n in alive}
    listed = {e["mutant"]: e for e in equivalents}
    equivalent = [n for n in alive if n in listed and listed[n]["change"].strip() == changes[n]]
    stale = [e["mutant"] for e in equivalents if e["mutant"] in status and e["mutant"] not in equivalent]
    survivors = [n for n in alive if n not in equivalent]
    caught = counts.get("killed", 0) + counts.get("timeout", 0)
    considered = len(status) - len(equivalent)
    return {
        "tests": tests, "mutants": len(status), "killed": counts.get("killed", 0),
        "timeout": counts.get("timeout", 0), "survived": counts.get("survived", 0),
        "no_tests": counts.get("no tests", 0), "other": {k: v for k, v in counts.items()
                                                          if k not in ("killed", "timeout", "survived", "no tests")},
        "equivalent": len(equivalent), "stale_equivalents": stale,
        "score": round(caught / considered, 4) if considered else None,
        "seconds": round(seconds, 1),
        "survivors": [{"mutant": n, "status": status[n], "change": changes[n]} for n in survivors],
        "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--module", action="append", help="a module path from modules.toml (repeatable; default: all)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON (merged: other modules are kept)")
    p.add_argument("--work", type=Path, default=ROOT / "build" / "mutation", help="scratch folder")
    p.add_argument("--max-children", type=int, default=1, help="mutants tried at once (default 1)")
    a = p.parse_args(argv)
    modules = load_modules()
    chosen = a.module or list(modules)
    unknown = [m for m in chosen if m not in modules]
    if unknown:
        p.error(f"not in {HERE / 'modules.toml'}: {', '.join(unknown)} (known: {', '.join(modules)})")
    equivalents = load_equivalents()
    results = json.loads(a.out.read_text()) if a.out.is_file() else {}
    figures, details = results.get("figures", {}), results.get("details", {})
    failing = []
    for module in chosen:
        print(f"mutating {module} against {', '.join(modules[module])} ...", file=sys.stderr, flush=True)
        r = run_module(module, modules[module], a.work, equivalents, a.max_children)
        figures[module] = {k: r[k] for k in FIGURES}
        details[module] = {k: v for k, v in r.items() if k not in FIGURES}
        score = "n/a" if r["score"] is None else f"{100 * r['score']:.1f}%"
        print(f"{module}: {score} ({r['killed'] + r['timeout']} of {r['mutants'] - r['equivalent']} caught, "
              f"{r['equivalent']} equivalent, {r['seconds']:.0f} s)")
        for s in r["survivors"]:
            print(f"  {s['status']:>9}  {s['mutant']}\n             {s['change']}")
        for name in r["stale_equivalents"]:
            print(f"  stale entry in equivalent.toml (its change is no longer what mutmut makes): {name}")
        if r["score"] is None or r["score"] < GOAL:
            failing.append(module)
        # The results-file shape every benchmark writes (benchmarks/common.py: write_results): the
        # docs render `figures`; survivors and test lists stay beside them in `details`.
        results = {"benchmark": "mutation", "variant": None,
                   "command": "python benchmarks/mutation/run.py [--module path]  (make mutation [MODULE=path])",
                   "machine": machine(), "tool": "mutmut", "goal": GOAL,
                   "notes": "score = (killed + timeout) / (mutants - reviewed equivalents); seconds on the "
                            "machine named here, one mutant at a time",
                   "figures": figures, "details": details}
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")  # after each module
    print(json.dumps({m: figures[m]["score"] for m in chosen}))
    if failing:
        print(f"below {GOAL:.0%}: {', '.join(failing)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
