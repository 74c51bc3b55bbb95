"""How long a newcomer waits for `make test`: a fresh clone of this checkout's HEAD, its first
install, then the test suite, as CI runs it (`.ci/run`).

    python benchmarks/bench_make_test.py            # clone HEAD into a temporary folder, install, test
    python benchmarks/bench_make_test.py --keep DIR # keep the clone (and its .venv) in DIR

`make test` is run as two timed steps: `make install` (what `make test` installs first: the package
with its dev and docs extras, and the browser once) and then `make test` itself, whose install step
is then a no-op. `CI=true` is set as CI sets it, so tests that need ../shared/data or the browser
fail instead of skipping. Figures: install and test minutes, the pytest summary's counts, and the
slowest tests. Time it on an idle machine: the suite uses both cores.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import REPO, print_json, print_table, stage  # noqa: E402

# pytest's last line: "=== 3 passed, 1 skipped in 5.20s ===" (or without the rules under -q)
SUMMARY = re.compile(r"^=*\s*(\d+ (?:passed|failed|skipped|errors?|deselected|xfailed|xpassed)\b.*?) in ([\d.]+)s\b",
                     re.M)
DURATION = re.compile(r"^([\d.]+)s (call|setup|teardown)\s+(\S+)$", re.M)


def timed_make(target: str, clone: Path, log: Path) -> tuple[float, str]:
    env = {**os.environ, "CI": "true"}
    env.pop("PYTHONPATH", None)
    t0 = time.time()
    with log.open("w") as f:
        proc = subprocess.run(["make", "--no-print-directory", target], cwd=clone, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        f.write(proc.stdout)
    wall = time.time() - t0
    if proc.returncode:
        sys.exit(f"make {target} failed ({proc.returncode}) in {clone}; its output: {log}\n{proc.stdout[-3000:]}")
    return wall, proc.stdout


def counts(summary: str) -> dict[str, int]:
    return {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)", summary)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", default=None, metavar="DIR", help="clone into DIR (must not exist) and keep it")
    a = ap.parse_args()
    if a.keep and Path(a.keep).exists():
        sys.exit(f"{a.keep}: exists; --keep clones into a new folder")
    clone = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="littune-make-test-")) / "littune"
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stage(f"cloning {REPO} at {head} into {clone}")
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    shared = REPO.parent / "shared"
    if not (clone.parent / "shared").exists() and shared.is_dir():  # tests read ../shared beside the clone
        (clone.parent / "shared").symlink_to(shared)
    stage("make install (the first install make test does)")
    install_s, _ = timed_make("install", clone, clone.parent / "make_install.log")
    stage("make test")
    test_s, out = timed_make("test", clone, clone.parent / "make_test.log")
    summaries = SUMMARY.findall(out)
    if not summaries:
        sys.exit(f"no pytest summary in {clone.parent / 'make_test.log'}")
    summary, pytest_s = summaries[-1]
    slowest = [{"s": float(s), "when": w, "test": t} for s, w, t in DURATION.findall(out)][:20]
    figures = {"commit": head, "install_min": round(install_s / 60, 2), "test_min": round(test_s / 60, 2),
               "total_min": round((install_s + test_s) / 60, 2), "pytest_s": float(pytest_s),
               "counts": counts(summary), "slowest": slowest}
    print_table(f"bench_make_test (fresh clone of {head}, {os.cpu_count()} cpus, CI=true)", [
        ("make install (first install)", f"{install_s / 60:.1f} min", ""),
        ("make test (after the install)", f"{test_s / 60:.1f} min", summary),
        ("both", f"{(install_s + test_s) / 60:.1f} min", "goal: <= 12 min"),
        *[(f"  {t['test'][:70]}", f"{t['s']:.1f} s", t["when"]) for t in slowest[:5]]])
    print_json(figures)
    if not a.keep:
        shutil.rmtree(clone.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
