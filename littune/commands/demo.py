"""``littune demo``: the whole LiT pipeline on real data with the offline default towers."""
from __future__ import annotations

import argparse
import json

from .base import command


@command("demo", "embed, LiT-train and evaluate on Flickr8k + TF-flowers (the main job)")
def _demo(p: argparse.ArgumentParser):
    p.add_argument("--data", default=None, help="folder with flickr8k/ and flowers/ (default ../shared/data, "
                                                "else the public data sets are downloaded)")
    p.add_argument("--out", default="runs/demo", help="where runs and reports go")
    p.add_argument("--text", default="minilm", choices=["minilm", "scratch"], help="text tower")
    p.add_argument("--quick", action="store_true", help="a small slice of the data: a first look in minutes")
    p.add_argument("--steps", type=int, default=None, help="override the number of training steps")
    p.add_argument("--cache", default=None, help="embedding cache root (default ~/.cache/littune)")
    p.add_argument("--json", action="store_true", help="print one JSON object with the results")
    p.add_argument("--no-progress", action="store_true")

    def run(a: argparse.Namespace) -> int:
        from ..demo import DemoOptions, format_table, run_demo

        result = run_demo(DemoOptions(data=a.data, out=a.out, text=a.text, quick=a.quick, steps=a.steps,
                                      cache=a.cache, progress=not a.no_progress))
        print(json.dumps(result) if a.json else format_table(result))
        return 0

    return run
