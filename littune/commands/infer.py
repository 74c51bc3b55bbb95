"""``littune classify``, ``littune index``, ``littune search``: use a trained model from the shell."""
from __future__ import annotations

import argparse
import json

from ..infer.index import IndexOptions
from .base import command

_I = IndexOptions()  # the defaults live in the option dataclass; flags show them


def _bar(p: float, width: int = 30) -> str:
    return "#" * int(round(p * width))


@command("classify", "zero-shot classify images into labels you type")
def _classify(p: argparse.ArgumentParser):
    p.add_argument("--model", required=True, help="run directory (littune train/demo) or export")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--labels", required=True, help='comma-separated labels, e.g. "cat,dog,car"')
    p.add_argument("--templates", default=None,
                   help="prompt templates: a built-in set or a file of lines with {}; combine several with '+' "
                        "(flowers+simple; default: simple)")
    p.add_argument("--json", action="store_true",
                   help='print a list of {"image", "label", "scores": {label: probability}}')

    def run(a: argparse.Namespace) -> int:
        from ..infer import load, parse_labels

        labels = parse_labels(a.labels)
        lit = load(a.model)
        results = [{"image": path, "label": next(iter(scores)), "scores": scores}
                   for path, scores in zip(a.images, lit.classify(a.images, labels, a.templates))]
        if a.json:
            print(json.dumps(results, indent=2))
            return 0
        w = max(len(x) for x in labels)
        for r in results:
            print(r["image"])
            for rank, (label, prob) in enumerate(r["scores"].items(), 1):
                print(f"  {rank:>2}. {label:<{w}}  {prob:6.1%}  {_bar(prob)}")
        return 0

    return run


@command("index", "embed a folder of images into a searchable index (resumable)")
def _index(p: argparse.ArgumentParser):
    p.add_argument("--model", required=True, help="run directory or export")
    p.add_argument("folder", metavar="DIR", help="folder of images (sub-folders too)")
    p.add_argument("--out", required=True, help="index folder (re-run the same command to resume)")
    p.add_argument("--faiss-threshold", type=int, default=_I.faiss_threshold,
                   help=f"search with FAISS from this many images on (default {_I.faiss_threshold}; 0: always)")
    p.add_argument("--faiss", default=_I.faiss_factory, metavar="FACTORY",
                   help=f"FAISS index_factory string (default {_I.faiss_factory}, exact; e.g. HNSW32 for millions)")
    p.add_argument("--batch-size", type=int, default=_I.batch_size, help=f"images per forward pass (default {_I.batch_size})")
    p.add_argument("--workers", type=int, default=None, help="decoding workers (default: spare cores)")
    p.add_argument("--shard-size", type=int, default=_I.shard_size,
                   help=f"images per resumable shard (default {_I.shard_size})")
    p.add_argument("--no-progress", action="store_true")

    def run(a: argparse.Namespace) -> int:
        from ..infer import load

        index = load(a.model).build_index(a.folder, a.out, IndexOptions(
            faiss_threshold=a.faiss_threshold, faiss_factory=a.faiss, batch_size=a.batch_size,
            num_workers=a.workers, shard_size=a.shard_size, progress=not a.no_progress))
        m = index.meta
        print(json.dumps({"index": a.out, "count": m["count"], "n_bad": m["n_bad"], "backend": m["backend"],
                          "model": m["model"], "bad_inputs": m["bad_inputs"]}))
        if m["n_bad"]:
            print(f"skipped {m['n_bad']} bad images, listed in {m['bad_inputs']}")
        return 0

    return run


@command("search", "find images in an index by describing them")
def _search(p: argparse.ArgumentParser):
    p.add_argument("--index", required=True, help="index folder made by `littune index`")
    p.add_argument("query", help='what to look for, e.g. "a dog catching a frisbee"')
    p.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--model", default=None, help="the model, if it moved since the index was made")
    p.add_argument("--json", action="store_true", help='print a list of {"rank", "path", "key", "score"}')

    def run(a: argparse.Namespace) -> int:
        from ..infer import load_index

        if a.k < 1:
            raise ValueError(f"-k must be >= 1, got {a.k}")
        if not a.query.strip():
            raise ValueError("query: empty; describe what to look for")
        hits = load_index(a.index, model=a.model).search(a.query, k=a.k)
        rows = [{"rank": r, "path": h.path, "key": h.key, "score": round(h.score, 6)} for r, h in enumerate(hits, 1)]
        if a.json:
            print(json.dumps(rows, indent=2))
            return 0
        for row in rows:
            print(f"{row['rank']:>3}. {row['score']:.4f}  {row['path']}")
        return 0

    return run
