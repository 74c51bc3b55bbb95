"""``littune eval zeroshot|retrieval|probe``: evaluate a run (or export) on data."""
from __future__ import annotations

import argparse
import json

from .base import command

_COUNTS = ("n", "n_skipped", "n_images", "n_texts", "best_C", "n_train", "n_test")  # printed after the metrics


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="run directory (littune train/demo), littune export, or an "
                                                  "open_clip folder (local-dir:DIR)")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.add_argument("--report", default=None, metavar="DIR", help="write report.md and plots here")
    p.add_argument("--cache", default=None, metavar="DIR", help="embedding cache root (default ~/.cache/littune)")
    p.add_argument("--no-progress", action="store_true")


def _print(kind: str, metrics: dict, scalars: tuple[str, ...], as_json: bool) -> None:
    if as_json:
        print(json.dumps({k: v for k, v in metrics.items() if k not in ("confusion",)}))
        return
    print(f"{kind}:")
    for k in (*scalars, *_COUNTS):
        if k in metrics:
            v = metrics[k]
            print(f"  {k:<16} {v:.4f}" if isinstance(v, float) else f"  {k:<16} {v}")
    if isinstance(metrics.get("per_class"), dict):
        for name, acc in metrics["per_class"].items():
            print(f"    {name:<20} {acc:.3f}")


def _options(a: argparse.Namespace) -> dict:
    """The evaluator's options from the sub-command's flags (the evaluator checks them)."""
    if a.kind == "zeroshot":
        return {"images": a.images, "classnames": a.classnames, "templates": a.templates}
    if a.kind == "retrieval":
        return {"data": a.data, "split": a.split}
    return {"train": a.train, "test": a.test}


@command("eval", "evaluate a trained model: zeroshot, retrieval or probe")
def _eval(p: argparse.ArgumentParser):
    sub = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    z = sub.add_parser("zeroshot", help="zero-shot classification of a folder with one sub-folder per class")
    _common(z)
    z.add_argument("--images", required=True, help="folder of class sub-folders")
    z.add_argument("--classnames", default=None, help="file of 'folder,name' lines (default: folder names)")
    z.add_argument("--templates", default="simple",
                   help="a built-in template set or a file of lines with {}; combine several with '+' (flowers+simple)")
    r = sub.add_parser("retrieval", help="image-text retrieval R@1/5/10")
    _common(r)
    r.add_argument("--data", required=True, help="flickr8k folder, flickr8k:DIR, csv/jsonl or WebDataset")
    r.add_argument("--split", default="test", help="split for Flickr8k-style data (default test)")
    pr = sub.add_parser("probe", help="linear probe on the locked image features")
    _common(pr)
    pr.add_argument("--train", required=True, help="labelled folder to fit on")
    pr.add_argument("--test", required=True, help="labelled folder to score")

    def run(a: argparse.Namespace) -> int:
        from ..evaluate.suite import EvalSuite
        from ..evaluate.summary import build_report
        from ..infer.open_clip_model import load_model

        suite = EvalSuite.from_evals({a.kind: {"kind": a.kind, **_options(a)}}, a.cache, not a.no_progress)
        model = load_model(a.model)  # open_clip folders run through the same evaluators
        m = suite.run(model)[a.kind]
        _print(a.kind, m, suite.evals[a.kind].evaluator.scalars, a.json)
        if a.report:
            path = build_report(a.report, f"littune eval {a.kind}: {a.model}", {a.kind: m}, run_dir=a.model)
            if not a.json:
                print(f"report: {path}")
        return 0

    return run
