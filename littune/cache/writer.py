"""``littune embed``: run the locked image tower once over a data set and write the cache.

Layout (clip-retrieval's, so its tools can read it), for shard k of ``shard_size`` images:
    img_emb/img_emb_{k}.npy          (n_k, D) float16/float32 embeddings (the tower's features)
    img_emb_views/img_emb_{k}.npy    (n_k, V, D) augmented views, with --views V
    metadata/metadata_{k}.parquet    key, image_path, caption, captions (all captions of the image),
                                     sha256, bytes (of the image's encoded bytes, hashed as they were read)
    bad/bad_{k}.tsv                  images skipped in this shard, with the reason
    manifest.json                    tower, weight fingerprint, preprocessing, dtype, counts
A shard is complete once its ``img_emb`` file exists (written last, renamed atomically), so a killed
run continues from the last complete shard and ends with the same files as an uninterrupted one.
Running again also repairs: a finished shard whose files disagree (``verify.py``; with
``verify=True`` also their SHA-256) is embedded again, and good shards are left untouched.
Under torchrun, shard k belongs to rank k % world_size; rank 0 writes the manifest at the end.
Each shard's manifest record also carries its sources' fingerprint (``sources.py``): the SHA-256
of its images' bytes, taken by the decoding workers from the bytes they decode (no second read).
"""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .. import distributed as dist_utils
from ..data.decode import DecodeDataset, collate_hashed
from ..data.images import BadInputLog
from ..data.workers import loader_workers
from ..towers import ImageTower
from .items import ImageItem, content_fingerprint
from .manifest import CacheMismatch, Manifest
from .options import EmbedOptions, auto_shard_size
from .verify import bad_file, img_emb_file, shard_problems, shard_record


def save_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` whole or not at all: into a temporary file renamed over it at the end; a failed
    write (a full disk) removes the temporary file and leaves the old ``path`` as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would append .npy to the .tmp name
        np.save(f, array)


def shard_done(out: Path, k: int) -> bool:
    return (out / img_emb_file(k)).is_file()


def _write_metadata(path: Path, items: list[ImageItem], digests: list[tuple[str, int]] | None = None) -> None:
    """One row per cached image; ``digests``: each image's (SHA-256, size) as embedding read it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {
        "key": [it.key for it in items],
        "image_path": [it.image_path for it in items],
        "caption": [it.captions[0] if it.captions else "" for it in items],
        "captions": [list(it.captions) for it in items],
    }
    if digests is not None:
        columns["sha256"] = [d for d, _ in digests]
        columns["bytes"] = pa.array([n for _, n in digests], pa.int64())
    table = pa.table(columns)
    save_atomic(path, lambda p: pq.write_table(table, p))


def _uint8_path(tower: ImageTower) -> bool:
    """Whether the tower's preprocessing splits into uint8 resizing and a normalisation (littune's own does)."""
    return hasattr(tower.preprocess, "pil_transform") and hasattr(tower.preprocess, "normalize")


def _runner(tower: ImageTower, opts: EmbedOptions) -> tuple[Callable[[torch.Tensor], np.ndarray], str]:
    """uint8 pixels (B, 3, H, W) -> features (B, D) float32, and the engine's name. A tower on a GPU
    runs there under torch; on the CPU the chosen engine (towers/engine.py) runs it. A preprocessing
    with float transforms only gets float pixels and runs under torch."""
    device = next(tower.parameters()).device
    bf16 = getattr(tower, "cache_precision", "fp32") == "bf16"  # model.image.cache_precision
    if not _uint8_path(tower):  # a preprocessing only offered as float transforms (open_clip's own)
        def as_is(x: torch.Tensor) -> np.ndarray:
            with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                return tower(x.to(device)).float().cpu().numpy()
        return as_is, f"torch-{device.type}"
    if device.type != "cpu":
        def on_device(x: torch.Tensor) -> np.ndarray:
            with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                return tower(tower.preprocess.normalize(x).to(device)).float().cpu().numpy()
        return on_device, f"torch-{device.type}"
    from ..towers.engine import image_engine

    engine = image_engine(tower, opts.engine, threads=opts.threads or torch.get_num_threads())
    return (lambda x: engine(x.numpy())), engine.name


def _batches(tower: ImageTower, items: list[ImageItem], shards: list[int], shard_size: int,
             opts: EmbedOptions) -> Iterator[tuple[list[int], torch.Tensor | None, list]]:
    """The decoded batches of every shard in ``shards``, in order, from ONE DataLoader: its workers
    decode the next shard's first batches while the last one's files are written. (A loader per shard
    emptied its prefetch queue at each boundary and started fresh workers: a visible pause every
    shard, 750 images on Flickr8k's train split.) A batch never spans two shards, and the batches are
    the ones a loader per shard made (same indices, same per-image view seeds: offset 0 over all
    items gives image i the seed a shard's loader gave it with offset = the shard's start)."""
    pre = tower.preprocess
    uint8 = _uint8_path(tower)
    ds = DecodeDataset([it.image for it in items], names=[it.key for it in items],
                       transform=pre.pil_transform() if uint8 else pre.transform(),
                       view_transform=pre.pil_train_transform() if uint8 else pre.train_transform(),
                       views=opts.views, seed=opts.seed, offset=0, max_pixels=opts.max_pixels, hashes=True)
    plan = [list(range(b, min(b + opts.batch_size, (k + 1) * shard_size, len(items))))
            for k in shards for b in range(k * shard_size, min((k + 1) * shard_size, len(items)), opts.batch_size)]
    workers = opts.num_workers if opts.num_workers is not None else max(1, (os.cpu_count() or 2) - 1)
    # A generator of its own: iterating a DataLoader must not draw from the global RNG (training
    # after an embedding would otherwise depend on whether the cache already existed).
    loader = DataLoader(ds, batch_sampler=plan, **loader_workers(workers), collate_fn=collate_hashed,
                        prefetch_factor=4 if workers else None, persistent_workers=False,
                        generator=torch.Generator().manual_seed(opts.seed))
    return iter(loader)


def _embed_shard(run: Callable[[torch.Tensor], np.ndarray], tower: ImageTower, batches: Iterator, n: int,
                 offset: int, opts: EmbedOptions, bar: tqdm | None) -> tuple[list[int], np.ndarray, np.ndarray | None, list, list]:
    """Embed the ``n`` images of the shard starting at item ``offset`` from ``batches`` (``_batches``);
    indices returned are the shard's own (0..n-1); ``digests``: the kept images'
    (SHA-256, size) of the bytes decoded."""
    kept, embs, view_embs, bad, digests = [], [], [], [], []
    np_dtype = np.dtype(opts.dtype)
    for _ in range(-(-n // opts.batch_size)):
        idx, x, b, d = next(batches)
        bad += [(i - offset, r) for i, r in b]
        digests += d
        if idx:
            B, V1 = x.shape[:2]
            feats = run(x.flatten(0, 1)).reshape(B, V1, -1)  # uint8 (B*(1+V), 3, H, W) -> (B, 1+V, D)
            kept += [i - offset for i in idx]
            embs.append(feats[:, 0].astype(np_dtype))
            if opts.views:
                view_embs.append(feats[:, 1:].astype(np_dtype))
        if bar is not None:
            bar.update(len(idx) + len(b))
    D = tower.embed_dim
    emb = np.concatenate(embs) if embs else np.zeros((0, D), np_dtype)
    views = (np.concatenate(view_embs) if view_embs else np.zeros((0, opts.views, D), np_dtype)) if opts.views else None
    return kept, emb, views, bad, digests


def embed_items(items: list[ImageItem], tower: ImageTower, out: str | Path, *, source: str,
                opts: EmbedOptions | None = None, bad_rows: BadInputLog | None = None,
                content: str | None = None, verify: bool = False) -> Manifest:
    """Embed every image into ``out`` (resuming complete shards, re-embedding broken ones; ``verify``:
    also those whose files' SHA-256 differ from the manifest's) and return the final manifest.

    ``content``: the items' ``content_fingerprint`` (computed here when not given).
    """
    opts = opts or EmbedOptions()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tower.eval()
    rank, world = dist_utils.rank(), dist_utils.world_size()
    old = _previous(out)
    shard_size = opts.shard_size or (old.shard_size if old else auto_shard_size(len(items)))
    manifest = Manifest(tower=tower.name, fingerprint=tower.fingerprint(), preprocess=tower.preprocess.to_dict(),
                        embed_dim=tower.embed_dim, dtype=opts.dtype, source=source, shard_size=shard_size,
                        views=opts.views, content=content or content_fingerprint(items), n_items=len(items),
                        n_captions=sum(len(i.captions) for i in items), world_size=world,
                        precision=getattr(tower, "cache_precision", "fp32"))
    _check_resumable(out, old, manifest)
    if rank == 0:
        manifest.shards = _keep_good_shards(out, manifest, old, verify)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()  # rank 0 has dropped the broken shards: every rank sees the same ones missing
    if old is not None and old.complete and all(shard_done(out, k) for k in range(old.n_shards)):
        say_complete(out, old, opts.progress)  # a rerun: one line instead of an empty progress bar
        return old
    mine = [k for k in range(manifest.n_shards) if k % world == rank and not shard_done(out, k)]
    run, engine = _runner(tower, opts) if mine else (None, "")
    manifest.engine = engine or (old.engine if old else "")
    if rank == 0:  # incomplete until the end; records what the shards are made with (the engine too, so
        manifest.write(out)  # a run resumed with nothing left to embed still names it)
    todo = sum(len(items[k * shard_size:(k + 1) * shard_size]) for k in mine)
    bar = tqdm(total=todo, unit="img", desc=f"embed {tower.name}" + (f" [rank {rank}]" if world > 1 else ""),
               disable=not opts.progress, dynamic_ncols=True)
    batches = _batches(tower, items, mine, shard_size, opts) if mine else iter(())
    for k in mine:
        start = k * shard_size
        shard = items[start:start + shard_size]
        kept, emb, views, bad, digests = _embed_shard(run, tower, batches, len(shard), start, opts, bar)
        log = BadInputLog()
        for i, (reason, detail) in bad:
            log.add(shard[i].key, shard[i].image_path, reason, detail)
        save_atomic(out / "bad" / f"bad_{k}.tsv", lambda p: log.write(p))
        _write_metadata(out / "metadata" / f"metadata_{k}.parquet", [shard[i] for i in kept], digests)
        if views is not None:
            save_atomic(out / "img_emb_views" / f"img_emb_{k}.npy", lambda p: save_npy(p, views))
        save_atomic(out / "img_emb" / f"img_emb_{k}.npy", lambda p: save_npy(p, emb))  # last
    assert next(batches, None) is None  # every planned batch was embedded (and the workers stop here)
    bar.close()
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    if rank == 0:
        finalize(out, manifest, bad_rows)
    if world > 1:
        dist.barrier()
    return Manifest.read(out)


def _previous(out: Path) -> Manifest | None:
    """The manifest already in ``out`` (None if there is none; one of another format is refused)."""
    try:
        return Manifest.read(out)
    except FileNotFoundError:
        return None


def say_complete(out: Path, m: Manifest, progress: bool) -> None:
    """What a rerun on a finished cache prints instead of an empty progress bar (stderr)."""
    if progress:
        print(f"{out}: already complete ({m.count} images)", file=sys.stderr, flush=True)


def _check_resumable(out: Path, old: Manifest | None, manifest: Manifest) -> None:
    """Refuse to continue a cache made with other settings or from other data (the data by its content
    fingerprint; by its spec for a cache made before content was recorded)."""
    if old is None:
        return
    fields = ("tower", "fingerprint", "preprocess", "embed_dim", "precision", "dtype", "shard_size", "views",
              "n_items", "content" if old.content else "source")
    diffs = [f"{f}: {getattr(old, f)!r} -> {getattr(manifest, f)!r}" for f in fields
             if getattr(old, f) != getattr(manifest, f)]
    if diffs:
        what = " (its files, sizes or captions changed)" if old.content and old.content != manifest.content else ""
        raise CacheMismatch(f"{out} already holds a cache made with other settings or from other data{what}; "
                            "use a new --out or delete it:\n  " + "\n  ".join(diffs))


def _keep_good_shards(out: Path, manifest: Manifest, old: Manifest | None, verify: bool) -> list[dict]:
    """Check every finished shard; drop (to embed again) those that are broken, keep the others'
    manifest records (their SHA-256 taken when they were written, never re-taken from a changed file)."""
    records = {s["index"]: s for s in (old.shards if old else []) if isinstance(s, dict) and "index" in s}
    kept = []
    for k in range(manifest.n_shards):
        if not shard_done(out, k):
            continue
        rec = records.get(k)
        problems = shard_problems(out, manifest, k, rec, hashes=verify and bool((rec or {}).get("files")))
        if problems:
            warnings.warn(f"{out}: shard {k} is broken ({'; '.join(problems)}): embedding it again", CacheRepair)
            (out / img_emb_file(k)).unlink()
        elif rec is not None:
            kept.append(rec)
    return kept


class CacheRepair(UserWarning):
    """A broken shard found while resuming: it is embedded again."""


def finalize(out: Path, manifest: Manifest, bad_rows: BadInputLog | None = None) -> None:
    """Record each shard (rows, width, dtype, files' SHA-256: kept from ``manifest.shards`` for shards
    checked good at the start, taken now for those embedded in this run), merge the bad-input lists
    into one report, mark complete."""
    kept = {s["index"]: s for s in manifest.shards}
    shards, start, merged = [], 0, BadInputLog()
    for row in (bad_rows or []):
        merged.add(row.key, row.path, row.reason, getattr(row, "detail", ""))
    for k in range(manifest.n_shards):
        if not shard_done(out, k):
            raise RuntimeError(f"{out}: shard {k} missing at the end of embedding")
        rec = dict(kept[k]) if kept.get(k, {}).get("files") else shard_record(out, manifest, k, start)
        rec.update(start=start, end=start + rec["count"])
        shards.append(rec)
        start += rec["count"]
        for row in BadInputLog.read(out / bad_file(k)):
            merged.add(row.key, row.path, row.reason, row.detail)
    save_atomic(out / "bad_inputs.tsv", lambda p: merged.write(p))
    manifest.shards, manifest.count, manifest.n_bad, manifest.complete = shards, start, len(merged), True
    manifest.write(out)
