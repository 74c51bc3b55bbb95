"""``littune interpolate``: mix a run's trained text tower with its pre-trained weights (WiSE-FT).

    littune interpolate --model RUN --alpha 0.5 --out RUN2          # RUN2: a run folder
    littune interpolate --model RUN --sweep 0,0.25,0.5,0.75,1       # the run's own evaluations
    littune interpolate --model RUN --sweep 0,0.5,1 --data flickr8k:DIR:dev --zeroshot flowers/train
"""
from __future__ import annotations

import argparse
import json

from .base import command


def _flag_evals(a: argparse.Namespace) -> dict:
    evals = {}
    if a.data:
        evals["retrieval"] = {"kind": "retrieval", "data": a.data, "split": a.split}
    if a.zeroshot:
        evals["zeroshot"] = {"kind": "zeroshot", "images": a.zeroshot, "classnames": a.classnames,
                             "templates": a.templates}
    return evals


@command("interpolate", "mix a run's text tower with its pre-trained weights (WiSE-FT); --sweep draws the curve")
def _interpolate(p: argparse.ArgumentParser):
    p.add_argument("--model", required=True, help="run directory (littune train/demo), not an export")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--alpha", type=float, help="0: the pre-trained text tower, 1: the trained one (needs --out)")
    how.add_argument("--sweep", metavar="A,B,...", help="evaluate each alpha, e.g. 0,0.25,0.5,0.75,1")
    p.add_argument("--out", help="with --alpha: the new run folder")
    p.add_argument("--report", metavar="DIR", help="with --sweep: where the curve goes (default RUN/report/interpolation)")
    p.add_argument("--evals", metavar="FILE", help="with --sweep: an experiment YAML whose evals (and data.dev) to "
                   "run (default: the run's own)")
    p.add_argument("--data", help="with --sweep: retrieval data, e.g. flickr8k:DIR:dev or a Flickr8k folder")
    p.add_argument("--split", default="dev", help="split for a Flickr8k folder (default dev: a tuning split)")
    p.add_argument("--zeroshot", metavar="FOLDER", help="with --sweep: folder of class sub-folders for zero-shot")
    p.add_argument("--classnames", help="'folder,name' lines for --zeroshot (default: the folder names)")
    p.add_argument("--templates", default="simple", help="template set or file for --zeroshot")
    p.add_argument("--cache", metavar="DIR", help="embedding cache root (default ~/.cache/littune)")
    p.add_argument("--no-progress", action="store_true")

    def run(a: argparse.Namespace) -> int:
        from ..infer.interpolate import interpolate_run, sweep_run, sweep_suite

        sweep_only = [f"--{k}" for k in ("report", "evals", "data", "zeroshot", "classnames") if getattr(a, k)]
        if a.alpha is not None:
            if not a.out:
                raise ValueError("--alpha needs --out RUN2 (the new run folder)")
            if sweep_only:
                raise ValueError(f"{', '.join(sweep_only)} apply to --sweep, not --alpha")
            print(json.dumps(interpolate_run(a.model, a.alpha, a.out)))
            return 0
        if a.out:
            raise ValueError("--out applies to --alpha; a sweep writes its curve to --report")
        suite = sweep_suite(a.evals, _flag_evals(a), a.cache, not a.no_progress)
        result = sweep_run(a.model, a.sweep, suite, a.report, not a.no_progress)
        for row in result["rows"]:
            print(json.dumps(row))
        print(f"report: {result['report']}")
        return 0

    return run
