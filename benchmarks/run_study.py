"""Run a `littune study` grid and write its results with the machine and the command to docs/results/.

    python benchmarks/run_study.py configs/study/zeroshot.yaml [KEY=VALUE ...] [--setting NAME ...]

Runs ``littune study --config CONFIG ... --json`` (resumable: finished settings are kept), then writes
``docs/results/study-<config name>.json`` (benchmarks/common.py: write_results), which the studies
page renders. A grid run with ``--setting`` writes only the settings that have finished.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, print_json  # noqa: E402


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit(__doc__)
    config, rest = sys.argv[1], sys.argv[2:]
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "littune", "study", "--config", config, *rest, "--json"],
                          cwd=REPO, stdout=subprocess.PIPE, text=True, check=True)
    results = json.loads(done.stdout)
    print_json({"config": config, "wall_s": round(time.perf_counter() - t0, 1), "settings": results},
               variant=Path(config).stem)


if __name__ == "__main__":
    main()
