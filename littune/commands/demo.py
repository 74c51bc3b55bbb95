"""``littune demo``: the whole LiT pipeline on real data with the offline default towers."""
from __future__ import annotations

import argparse
import json

from .base import Number, add_cache, add_json, add_progress, command


@command("demo", "embed, LiT-train and evaluate on Flickr8k + TF-flowers (the main job)")
def _demo(p: argparse.ArgumentParser):
    p.add_argument("--data", default=None, metavar="DIR",
                   help="folder with flickr8k/ and flowers/ (default: ../shared/data beside the project, "
                        "else the public data sets are downloaded to ~/.cache/littune/data)")
    p.add_argument("--out", default="runs/demo", metavar="DIR", help="where runs go (OUT/latest points at the newest)")
    p.add_argument("--text", default="mpnet", choices=["mpnet", "minilm", "scratch"],
                   help="the recipe by its text tower: mpnet, locked MPNet on Lite0 + Lite2 (default: mpnet); "
                        "minilm, the former default, locked MiniLM on Lite0 (its model exports to open_clip); or "
                        "scratch, a transformer trained from scratch")
    p.add_argument("--quick", action="store_true", help="a small slice of the data: a first look in minutes")
    p.add_argument("--dev", action="store_true",
                   help="also evaluate Flickr8k dev retrieval every 100 steps while training (the report's R@1 "
                        "curve; about 1.5 minutes more on a first run)")
    p.add_argument("--steps", type=Number(int, 1, 10**9), default=None,
                   help="training steps (default: the recipe's, 300; 40 with --quick)")
    add_cache(p)
    add_json(p, "one object with the results")
    add_progress(p)

    def run(a: argparse.Namespace) -> int:
        from ..demo import DemoOptions, format_table, run_demo

        result = run_demo(DemoOptions(data=a.data, out=a.out, text=a.text, quick=a.quick, steps=a.steps,
                                      cache=a.cache, progress=not a.no_progress, dev=a.dev))
        print(json.dumps(result) if a.json else format_table(result))
        return 0

    return run
