"""Class knowledge in zero-shot prompts (docs/class_knowledge.md), on trained runs: flowers/train
(the tuning split) zero-shot with the flowers templates and knowledge none | hypernym | definition.

    python benchmarks/bench_class_knowledge.py NAME=RUN_DIR [NAME=RUN_DIR ...]

e.g. the demo's recipe and the two before it, as the studies left them:

    python benchmarks/bench_class_knowledge.py demo=runs/study/mpnet/bf16_lite0_lite2_img_bf16 \\
        lite0_mpnet=runs/study/mpnet/bf16 lite0_minilm=runs/study/towers/lite0_minilm

Prints a table (top-1 and mean per class for each run and knowledge) and the JSON line, also
written to docs/results/bench_class_knowledge.json. Only the prompts change: the image features
come from the runs' caches, so each run costs a few seconds after its first evaluation.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHARED, print_json, print_table  # noqa: E402

KNOWLEDGE = ("none", "hypernym", "definition")


def evaluate(run: str) -> dict:
    from littune.evaluate.suite import EvalSuite
    from littune.runs import load_run

    model, _ = load_run(run)
    evals = {k: {"kind": "zeroshot", "images": str(SHARED / "flowers" / "train"),
                 "classnames": str(REPO / "configs" / "study" / "flowers_classnames.csv"),
                 "templates": "flowers", "knowledge": k} for k in KNOWLEDGE}
    r = EvalSuite.from_evals(evals, None, progress=False).run(model)
    return {k: {"top1": round(r[k]["top1"], 4), "mean_per_class": round(r[k]["mean_per_class"], 4)}
            for k in KNOWLEDGE}


def main() -> None:
    runs = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    if not runs or len(runs) != len(sys.argv) - 1:
        sys.exit(__doc__)
    results = {name: {"run": run, **evaluate(run)} for name, run in runs.items()}
    rows = [(f"{name}: {k}", f"{r[k]['top1']:.3f}", f"mean per class {r[k]['mean_per_class']:.3f}")
            for name, r in results.items() for k in KNOWLEDGE]
    print_table("flowers/train zero-shot, flowers templates", rows)
    print_json({"split": "flowers/train", "templates": "flowers", "runs": results})


if __name__ == "__main__":
    main()
