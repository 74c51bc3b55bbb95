"""``littune interpolate``: mix a run's trained text tower with its pre-trained weights (WiSE-FT).

    littune interpolate --model RUN --alpha 0.5 --out RUN2          # RUN2: a run folder
    littune interpolate --model RUN --sweep 0,0.25,0.5,0.75,1       # the run's own evaluations
    littune interpolate --model RUN --sweep 0,0.5,1 --data flickr8k:DIR:dev --zeroshot flowers/train
"""
from __future__ import annotations

import argparse
import json

from .base import Number, add_cache, add_class_prompts, add_json, add_model, add_progress, command

_SWEEP_ONLY = ("report", "evals", "data", "split", "zeroshot", "classnames")  # flags refused with --alpha


def _flag_evals(a: argparse.Namespace) -> dict:
    from ..evaluate.evaluators import split_or_default

    evals = {}
    if a.data:
        evals["retrieval"] = {"kind": "retrieval", "data": a.data, "split": split_or_default(a.data, a.split, "dev")}
    if a.zeroshot:
        evals["zeroshot"] = {"kind": "zeroshot", "images": a.zeroshot, "classnames": a.classnames,
                             "templates": a.templates}
    return evals


@command("interpolate", "mix a run's trained text tower with its pre-trained weights (WiSE-FT): --alpha A writes "
                        "a new run, --sweep evaluates a list of alphas and writes a table and plot of the curve")
def _interpolate(p: argparse.ArgumentParser):
    add_model(p, what="a run directory (littune train/demo, e.g. runs/demo/latest); not an export, whose "
                      "config no longer names the pre-trained text tower")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--alpha", type=Number(float, 0.0, 1.0), default=None,
                     help="mix weight in [0, 1]: 0 the pre-trained text tower, 1 the trained one; needs --out "
                          "(no default: give --alpha or --sweep)")
    how.add_argument("--sweep", default=None, metavar="A,B,...",
                     help="evaluate the run mixed at each alpha, e.g. 0,0.25,0.5,0.75,1 (no default: give --alpha "
                          "or --sweep)")
    p.add_argument("--out", default=None, metavar="RUN2",
                   help="with --alpha: the new run folder (no default: required with --alpha)")
    p.add_argument("--report", default=None, metavar="DIR",
                   help="with --sweep: where the curve goes (default: RUN/report/interpolation)")
    p.add_argument("--evals", default=None, metavar="FILE",
                   help="with --sweep: an experiment YAML whose evals (and data.dev) to run (default: the run's own "
                        "evals and data.dev, unless --data / --zeroshot are given)")
    p.add_argument("--data", default=None,
                   help="with --sweep: retrieval data, e.g. flickr8k:DIR:dev or a Flickr8k folder (default: none)")
    p.add_argument("--split", default=None, choices=["train", "dev", "test", "all"],
                   help="split of Flickr8k-style --data (default: the split --data names, else dev: a tuning "
                        "split); naming another split than --data does is an error")
    p.add_argument("--zeroshot", default=None, metavar="DIR",
                   help="with --sweep: folder of class sub-folders for zero-shot, e.g. flowers/train (default: none)")
    add_class_prompts(p, "with --zeroshot: ")
    add_cache(p)
    p.add_argument("--device", default="auto",
                   help="with --sweep, where the evaluations run: auto (the GPU when CUDA is available, else the "
                        "CPU) | cpu | cuda[:N]; --alpha mixes on the CPU")
    add_json(p, "the result (--alpha: the new run's summary; --sweep: {rows: one per alpha, report})")
    add_progress(p)

    def run(a: argparse.Namespace) -> int:
        if a.alpha is not None:
            return _one(a)
        if a.out:
            raise ValueError("--out applies to --alpha; a sweep writes its curve to --report")
        from ..infer.interpolate import curve_table, sweep_run, sweep_suite

        suite = sweep_suite(a.evals, _flag_evals(a), a.cache, not a.no_progress)
        result = sweep_run(a.model, a.sweep, suite, a.report, not a.no_progress, a.device)
        if a.json:
            print(json.dumps(result))
        else:
            print("\n".join(curve_table(result["rows"])))
            print(f"report: {result['report']}")
        return 0

    return run


def _one(a: argparse.Namespace) -> int:
    """--alpha A --out RUN2: one mixed run folder."""
    if not a.out:
        raise ValueError("--alpha needs --out RUN2 (the new run folder)")
    sweep_only = [f"--{k}" for k in _SWEEP_ONLY if getattr(a, k)]
    if sweep_only:
        raise ValueError(f"{', '.join(sweep_only)} apply to --sweep, not --alpha")
    from ..infer.interpolate import interpolate_run

    summary = interpolate_run(a.model, a.alpha, a.out)
    if a.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {summary['out']}: the text tower of {a.model} mixed at alpha {summary['interpolate_alpha']:g} "
              "with its pre-trained weights (0: pre-trained, 1: trained); heads as trained")
    return 0
