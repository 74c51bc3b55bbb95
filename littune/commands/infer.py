"""``littune classify``, ``littune index``, ``littune search``: use a trained model from the shell."""
from __future__ import annotations

import argparse
import json
import sys

from ..infer.options import IndexOptions
from .base import Number, add_device, add_json, add_model, add_progress, command
from .embed import SHARD_HELP

_I = IndexOptions()  # the defaults live in the option dataclass; flags show them


def _bar(p: float, width: int = 30) -> str:
    return "#" * int(round(p * width))


@command("classify", "zero-shot classify images into labels you type")
def _classify(p: argparse.ArgumentParser):
    add_model(p)
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files; unreadable ones are skipped and reported (exit 2 only when none can be read)")
    p.add_argument("--labels", required=True, help='comma-separated labels, e.g. "cat,dog,car"')
    p.add_argument("--templates", default=None, metavar="SET_OR_FILE",
                   help="prompt templates: a built-in set or a file of lines with {}; combine several with '+' "
                        "(flowers+simple; default: simple)")
    add_device(p)
    add_json(p, 'a list of {"image", "label", "scores": {label: probability}, "probabilities": softmax|sigmoid} '
                '(a skipped image: {"image", "label": null, "scores": null, "skipped": reason})')

    def run(a: argparse.Namespace) -> int:
        from ..data.images import BadInputLog
        from ..infer import load, parse_labels

        labels = parse_labels(a.labels)
        lit = load(a.model, device=a.device)
        bad = BadInputLog()
        ranked = lit.classify(a.images, labels, a.templates, bad=bad)
        skipped = {int(b.key): b.detail or b.reason for b in bad}
        kind = lit.probability_kind  # as the model was trained: softmax over the labels, or sigmoid per label
        results = [{"image": path, "label": next(iter(scores)), "scores": scores, "probabilities": kind}
                   if scores is not None
                   else {"image": path, "label": None, "scores": None, "skipped": skipped[i]}
                   for i, (path, scores) in enumerate(zip(a.images, ranked))]
        if a.json:
            print(json.dumps(results, indent=2))
            return 0
        w = max(len(x) for x in labels)
        for r in results:
            if r["scores"] is None:
                print(f"skipped {r['skipped']}", file=sys.stderr)
                continue
            print(r["image"])
            for rank, (label, prob) in enumerate(r["scores"].items(), 1):
                print(f"  {rank:>2}. {label:<{w}}  {prob:6.1%}  {_bar(prob)}")
        print("probabilities: " + ("sigmoid, each label's own (SigLIP)" if kind == "sigmoid" else "softmax over the labels"))
        return 0

    return run


@command("index", "embed a folder of images into a searchable index (resumable)")
def _index(p: argparse.ArgumentParser):
    add_model(p)
    p.add_argument("folder", metavar="DIR", help="folder of images (sub-folders too)")
    p.add_argument("--out", required=True, help="index folder (re-run the same command to resume)")
    p.add_argument("--faiss-threshold", type=Number(int, 0, 10**12), default=_I.faiss_threshold,
                   help="search with FAISS from this many images on (0: always); below it, an exact matrix product")
    p.add_argument("--faiss", default=_I.faiss_factory, metavar="FACTORY",
                   help="FAISS index_factory string: Flat is exact; HNSW32 or IVF4096,Flat trade exactness for speed")
    p.add_argument("--batch-size", type=Number(int, 1, 65536), default=_I.batch_size, help="images per forward pass")
    p.add_argument("--workers", type=Number(int, 0, 256), default=None,
                   help="image decoding workers (0: decode in the main process; default: the spare cores)")
    p.add_argument("--shard-size", type=Number(int, 1, 10**9), default=_I.shard_size, metavar="N", help=SHARD_HELP)
    add_device(p)
    add_json(p, "the index's summary (index, count, n_bad, backend, model, bad_inputs)")
    add_progress(p)

    def run(a: argparse.Namespace) -> int:
        from ..infer import load

        index = load(a.model, device=a.device).build_index(a.folder, a.out, IndexOptions(
            faiss_threshold=a.faiss_threshold, faiss_factory=a.faiss, batch_size=a.batch_size,
            num_workers=a.workers, shard_size=a.shard_size, progress=not a.no_progress))
        m = index.meta
        if a.json:
            print(json.dumps({"index": a.out, "count": m["count"], "n_bad": m["n_bad"], "backend": m["backend"],
                              "model": m["model"], "bad_inputs": m["bad_inputs"]}))
        else:
            bad = f"; skipped {m['n_bad']} bad images, listed in {m['bad_inputs']}" if m["n_bad"] else ""
            print(f"indexed {m['count']} images of {a.folder} into {a.out} ({m['backend']} search){bad}")
        return 0

    return run


@command("search", "find images in an index by describing them")
def _search(p: argparse.ArgumentParser):
    p.add_argument("--index", required=True, metavar="DIR", help="index folder made by `littune index`")
    p.add_argument("query", help='what to look for, e.g. "a dog catching a frisbee"')
    p.add_argument("-k", type=Number(int, 1, 10_000), default=10, help="number of results")
    add_model(p, required=False, what="the model, if it moved since the index was made "
                                      "(default: the one recorded in the index)")
    add_device(p)
    add_json(p, 'a list of {"rank", "path", "key", "score"}')

    def run(a: argparse.Namespace) -> int:
        from ..infer import load_index

        if not a.query.strip():
            raise ValueError("query: empty; describe what to look for")
        hits = load_index(a.index, model=a.model, device=a.device).search(a.query, k=a.k)
        rows = [{"rank": r, "path": h.path, "key": h.key, "score": round(h.score, 6)} for r, h in enumerate(hits, 1)]
        if a.json:
            print(json.dumps(rows, indent=2))
            return 0
        for row in rows:
            print(f"{row['rank']:>3}. {row['score']:.4f}  {row['path']}")
        return 0

    return run
