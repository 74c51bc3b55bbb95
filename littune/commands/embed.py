"""``littune embed``: run the locked image tower once over a data set into an embedding cache."""
from __future__ import annotations

import argparse
import json

from ..cache.options import MAX_SHARD, MIN_SHARD, TARGET_SHARDS, EmbedOptions
from .base import Number, add_device, add_json, add_progress, command

_D = EmbedOptions()  # the defaults live in the option dataclass; flags show them
SHARD_HELP = (f"images per shard, the unit a killed run resumes from (default: about 1/{TARGET_SHARDS} of the "
              f"images, {MIN_SHARD} to {MAX_SHARD}: at most about a minute of work lost on 2 CPU cores; "
              "an existing cache keeps its own)")


@command("embed", "embed a data set's images with the locked image tower (resumable cache)")
def _embed(p: argparse.ArgumentParser):
    p.add_argument("--data", required=True,
                   help="csv/tsv/jsonl file, WebDataset shards, flickr8k:DIR[:split] or folder:DIR")
    p.add_argument("--out", required=True, help="cache folder (re-run the same command to resume)")
    p.add_argument("--tower", default=None,
                   help="image tower registry name (see `littune towers`; default: efficientnet_lite0)")
    p.add_argument("--checkpoint", default=None, help="local weights file for the tower (default: its own weights)")
    p.add_argument("--config", default=None,
                   help="experiment YAML whose model.image is the tower (views, crops, averaged_views, concat): "
                        "the cache `littune train` with that config reads; instead of --tower/--checkpoint (default: none, "
                        "the tower is --tower's)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dotted overrides of that config, e.g. model.image.averaged_views=[shortest,squash,border]")
    p.add_argument("--views", type=Number(int, 0, 64), default=_D.views,
                   help="augmented views per image besides the plain one (0: the plain view only)")
    p.add_argument("--dtype", choices=["float16", "float32"], default=_D.dtype, help="precision of the stored features")
    p.add_argument("--shard-size", type=Number(int, 1, 10**9), default=_D.shard_size, metavar="N", help=SHARD_HELP)
    p.add_argument("--batch-size", type=Number(int, 1, 65536), default=_D.batch_size, help="images per forward pass")
    p.add_argument("--workers", type=Number(int, 0, 256), default=None,
                   help="image decoding workers (0: decode in the main process; default: the spare cores)")
    p.add_argument("--image-col", default="image", help="column (csv/tsv) or key (jsonl) holding the image path")
    p.add_argument("--caption-col", default="caption", help="column or key holding the caption")
    p.add_argument("--root", default=None,
                   help="folder that relative image paths start from (default: the data file's folder)")
    p.add_argument("--engine", default=_D.engine, choices=["auto", "torch", "openvino", "onnx"],
                   help="what runs the locked tower on the CPU (auto: OpenVINO where installed, else torch); "
                        "engines agree with torch within 2.5e-5 (relative, a tenth of float16 storage rounding), so their caches are interchangeable")
    p.add_argument("--verify", action="store_true",
                   help="check the SHA-256 of every finished shard's files too (not only rows and widths) and "
                        "re-embed the shards that changed")
    add_device(p)
    add_json(p, "the cache's summary (out, count, n_items, n_bad, n_captions, tower, fingerprint)")
    add_progress(p)

    def run(a: argparse.Namespace) -> int:
        from .. import distributed
        from ..cache import embed

        distributed.init_from_env()
        tower = _tower(a).to(distributed.resolve_device(a.device))
        kwargs = {}
        if a.data.endswith((".csv", ".tsv", ".jsonl")):
            kwargs = {"image_col": a.image_col, "caption_col": a.caption_col, "root": a.root}
        opts = EmbedOptions(shard_size=a.shard_size, dtype=a.dtype, views=a.views, batch_size=a.batch_size,
                            num_workers=a.workers, progress=not a.no_progress, engine=a.engine)
        m = embed(a.data, tower, a.out, opts, verify=a.verify, **kwargs)
        if not distributed.is_main():
            return 0
        if a.json:
            print(json.dumps({"out": a.out, "count": m.count, "n_items": m.n_items, "n_bad": m.n_bad,
                              "n_captions": m.n_captions, "tower": m.tower, "fingerprint": m.fingerprint}))
        else:
            bad = f"; skipped {m.n_bad} bad inputs, listed in {a.out}/bad_inputs.tsv" if m.n_bad else ""
            print(f"embedded {m.count} of {m.n_items} images ({m.n_captions} captions) with {m.tower} "
                  f"into {a.out}{bad}")
        return 0

    return run


def _tower(a: argparse.Namespace):
    """The locked tower: ``--tower``/``--checkpoint``, or ``--config`` and overrides' ``model.image``."""
    if a.config is None and not a.overrides:
        from ..towers import create_image_tower

        return create_image_tower(a.tower or "efficientnet_lite0", checkpoint=a.checkpoint, lock="L")
    if a.tower is not None or a.checkpoint is not None:
        raise ValueError("give the tower by --tower/--checkpoint or by --config/KEY=VALUE (model.image), "
                         "not both")
    from ..config import load_config

    image = load_config(a.config, a.overrides).model.image
    if image.lock != "L":
        raise ValueError(f"model.image.lock='{image.lock}'; a cache holds a locked tower's features (set it to L)")
    return image.build()
