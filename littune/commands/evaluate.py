"""``littune eval zeroshot|retrieval|probe``: evaluate a run (or export) on data."""
from __future__ import annotations

import argparse
import json

from .base import HelpFormatter, add_cache, add_class_prompts, add_device, add_json, add_model, add_progress, command

_COUNTS = ("n", "n_skipped", "n_images", "n_texts", "protocol", "best_C", "n_train", "n_test")  # printed after the metrics


def _common(p: argparse.ArgumentParser) -> None:
    add_model(p, what="a run directory (littune train/demo, e.g. runs/demo/latest), a `littune export` folder, "
                       "or an open_clip folder (local-dir:DIR)")
    add_json(p, "the metrics")
    p.add_argument("--report", default=None, metavar="DIR",
                   help="also write report.md and its plots into DIR (default: no report)")
    add_cache(p)
    add_device(p)
    add_progress(p)


def _print(kind: str, metrics: dict, scalars: tuple[str, ...], as_json: bool) -> None:
    if as_json:
        print(json.dumps({k: v for k, v in metrics.items() if k not in ("confusion",)}))
        return
    print(f"{kind}:")
    marks = {**{k: f"trivial: {r}" for k, r in metrics.get("trivial", {}).items()},
             **{k: f"omitted: {r}" for k, r in metrics.get("omitted", {}).items()}}  # evaluate/degenerate.py
    for k in (*scalars, *_COUNTS):
        if k in metrics:
            v = metrics[k]
            line = f"  {k:<16} {v:.4f}" if isinstance(v, float) else f"  {k:<16} {v}"
            print(line + (f"  ({marks[k]})" if k in marks else ""))
        elif k in marks:
            print(f"  {k:<16} -       ({marks[k]})")
    if isinstance(metrics.get("per_class"), dict):
        for name, acc in metrics["per_class"].items():
            print(f"    {name:<20} {acc:.3f}")


def _options(a: argparse.Namespace) -> dict:
    """The evaluator's options from the sub-command's flags (the evaluator checks them)."""
    if a.kind == "zeroshot":
        return {"images": a.images, "classnames": a.classnames, "templates": a.templates}
    if a.kind == "retrieval":
        from ..evaluate.evaluators import split_or_default

        return {"data": a.data, "split": split_or_default(a.data, a.split)}
    return {"train": a.train, "test": a.test, "protocol": a.protocol}


_DESCRIPTIONS = {
    "zeroshot": "zero-shot classification of a folder with one sub-folder per class (ImageFolder layout): the "
                "class names written into prompt templates are the classifier; reports top-1, mean per-class "
                "accuracy, top-5 (from 5 classes on; marked trivial at exactly 5) and per-class accuracy, as "
                "CLIP_benchmark defines them",
    "retrieval": "image-to-text and text-to-image Recall@1/5/10 on captioned data (every caption of an image "
                 "counts as a hit; ties as torch.topk breaks them, as CLIP_benchmark does)",
    "probe": "linear probe: logistic regression on the locked image tower's features, fit on one labelled "
             "folder and scored on another (what the image tower knows, independent of the text tower)",
    "list": "every evaluation a config's `evals` names (zeroshot, retrieval, probe; e.g. ImageNet and its "
            "variants), one after the other, written as one table in CLIP_benchmark's CSV shape",
}


@command("eval", "evaluate a trained model: zeroshot, retrieval or probe")
def _eval(p: argparse.ArgumentParser):
    sub = p.add_subparsers(dest="kind", required=True, metavar="KIND")

    def kind(name: str, short: str) -> argparse.ArgumentParser:
        k = sub.add_parser(name, help=short, description=_DESCRIPTIONS[name], formatter_class=HelpFormatter)
        _common(k)
        return k

    z = kind("zeroshot", "zero-shot classification of a folder with one sub-folder per class")
    z.add_argument("--images", required=True, metavar="DIR",
                   help="folder of class sub-folders, e.g. flowers/test (not a folder of train/ and test/ splits)")
    add_class_prompts(z)
    r = kind("retrieval", "image-text retrieval R@1/5/10")
    r.add_argument("--data", required=True,
                   help="flickr8k:DIR[:split], a Flickr8k folder, csv/tsv/jsonl or WebDataset shards")
    r.add_argument("--split", default=None, choices=["train", "dev", "test", "all"],
                   help="split of Flickr8k-style data (default: the split --data names, else test); "
                        "naming another split than --data does is an error")
    pr = kind("probe", "linear probe on the locked image features")
    pr.add_argument("--train", required=True, metavar="DIR", help="labelled folder (class sub-folders) to fit on")
    pr.add_argument("--test", required=True, metavar="DIR", help="labelled folder with the same classes to score")
    pr.add_argument("--protocol", default="clip_benchmark", choices=["clip_benchmark", "quick"],
                    help="how C is chosen on a validation split of --train: clip_benchmark (default: CLIP_benchmark's log sweep then binary "
                         "search over 97 values) or quick (5 values, littune's earlier default)")

    ls = kind("list", "run a config's evaluation list; one CSV in CLIP_benchmark's shape")
    ls.add_argument("--config", required=True, metavar="YAML", help="an experiment config whose `evals` to run")
    ls.add_argument("--csv", default=None, metavar="FILE",
                    help="write the table here (default: print it); columns as `clip_benchmark build` writes them")

    def run(a: argparse.Namespace) -> int:
        if a.kind == "list":
            return _run_list(a)
        from ..evaluate.suite import EvalSuite
        from ..evaluate.summary import build_report
        from ..distributed import resolve_device
        from ..infer.open_clip_model import load_model

        suite = EvalSuite.from_evals({a.kind: {"kind": a.kind, **_options(a)}}, a.cache, not a.no_progress)
        model = load_model(a.model)  # open_clip folders run through the same evaluators
        model = model.to(resolve_device(a.device))
        m = suite.run(model)[a.kind]
        _print(a.kind, m, suite.evals[a.kind].evaluator.scalars, a.json)
        if a.report:
            path = build_report(a.report, f"littune eval {a.kind}: {a.model}", {a.kind: m}, run_dir=a.model)
            if not a.json:
                print(f"report: {path}")
        return 0

    return run


def _run_list(a: argparse.Namespace) -> int:
    """``littune eval list``: the config's evaluations on one model, as CLIP_benchmark's CSV."""
    import csv
    import sys

    from omegaconf import OmegaConf

    from ..distributed import resolve_device
    from ..evaluate.benchmark_csv import benchmark_rows, write_benchmark_csv
    from ..evaluate.suite import EvalSuite
    from ..infer.open_clip_model import load_model

    # Only the config's `evals` is read: an evaluation list needs no training data.
    evals = OmegaConf.to_container(OmegaConf.load(a.config)).get("evals") or {}
    if not evals:
        raise ValueError(f"{a.config}: names no evaluations (evals: {{name: {{kind: ..., ...}}}})")
    suite = EvalSuite.from_evals(evals, a.cache, not a.no_progress)  # refuses an evaluation named twice
    model = load_model(a.model).to(resolve_device(a.device))
    results = suite.run(model)
    kinds = {name: spec["kind"] for name, spec in evals.items()}
    rows = benchmark_rows(results, kinds, model=str(a.model))
    if a.csv:
        write_benchmark_csv(a.csv, rows)
    if a.json:
        print(json.dumps(rows))
    elif not a.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    else:
        print(f"{len(rows)} evaluations: {a.csv}")
    if a.report:
        from ..evaluate.summary import build_report

        build_report(a.report, f"littune eval list: {a.model}", results, run_dir=a.model)
    return 0
