"""``littune eval zeroshot|retrieval|probe``: evaluate a run (or export) on data."""
from __future__ import annotations

import argparse
import json

from ..cli import command

_SCALARS = ("top1", "top5", "mean_per_class", "n", "n_skipped", "i2t_r1", "i2t_r5", "i2t_r10",
            "t2i_r1", "t2i_r5", "t2i_r10", "n_images", "n_texts", "best_C", "n_train", "n_test")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="run directory (littune train/demo) or export")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.add_argument("--report", default=None, metavar="DIR", help="write report.md and plots here")
    p.add_argument("--cache", default=None, metavar="DIR", help="embedding cache root (default ~/.cache/littune)")
    p.add_argument("--no-progress", action="store_true")


def _print(kind: str, metrics: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps({k: v for k, v in metrics.items() if k not in ("confusion",)}))
        return
    print(f"{kind}:")
    for k in _SCALARS:
        if k in metrics:
            v = metrics[k]
            print(f"  {k:<16} {v:.4f}" if isinstance(v, float) else f"  {k:<16} {v}")
    if isinstance(metrics.get("per_class"), dict):
        for name, acc in metrics["per_class"].items():
            print(f"    {name:<20} {acc:.3f}")


@command("eval", "evaluate a trained model: zeroshot, retrieval or probe")
def _eval(p: argparse.ArgumentParser):
    sub = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    z = sub.add_parser("zeroshot", help="zero-shot classification of a folder with one sub-folder per class")
    _common(z)
    z.add_argument("--images", required=True, help="folder of class sub-folders")
    z.add_argument("--classnames", default=None, help="file of 'folder,name' lines (default: folder names)")
    z.add_argument("--templates", default="simple", help="template file (lines with {}) or a built-in set")
    r = sub.add_parser("retrieval", help="image-text retrieval R@1/5/10")
    _common(r)
    r.add_argument("--data", required=True, help="flickr8k folder, flickr8k:DIR, csv/jsonl or WebDataset")
    r.add_argument("--split", default="test", help="split for Flickr8k-style data (default test)")
    pr = sub.add_parser("probe", help="linear probe on the locked image features")
    _common(pr)
    pr.add_argument("--train", required=True, help="labelled folder to fit on")
    pr.add_argument("--test", required=True, help="labelled folder to score")

    def run(a: argparse.Namespace) -> int:
        from ..evaluate.suite import eval_probe, eval_retrieval, eval_zeroshot
        from ..evaluate.summary import build_report
        from ..runs import load_run

        model, _cfg = load_run(a.model)
        progress = not a.no_progress
        if a.kind == "zeroshot":
            m = eval_zeroshot(model, a.images, a.classnames, a.templates, a.cache, progress)
        elif a.kind == "retrieval":
            m = eval_retrieval(model, a.data, a.split, a.cache, progress)
        else:
            m = eval_probe(model, a.train, a.test, a.cache, progress)
        _print(a.kind, m, a.json)
        if a.report:
            path = build_report(a.report, f"littune eval {a.kind}: {a.model}", {a.kind: m}, run_dir=a.model)
            if not a.json:
                print(f"report: {path}")
        return 0

    return run
