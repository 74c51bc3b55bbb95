"""Training batches: from the embedding cache (the default, locked path) or from images (live).

Both produce, for a step s, the batch ``PairSchedule.batch(s)`` names: cached image features or
decoded pixels, and one caption per image. The live path decodes in DataLoader workers, which
read batches by step number, so resuming at step s just starts the loader at s.
"""
from __future__ import annotations

import os
import warnings
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..cache import EmbedOptions, EmbeddingCache, ensure_cache, load_items
from ..cache.items import ImageItem
from ..cache.prefix import PrefixCache, PrefixOptions, check_prefix_tower, ensure_prefix_cache, prefix_cache_dir
from ..cache.text import TextCache, TextEmbedOptions, ensure_text_cache, text_cache_dir
from ..data.images import BadImage, load_image
from ..data.workers import loader_workers
from ..towers import ImageTower
from ..config import DataConfig
from ..distributed import rank_seed
from .batches import PairSchedule


def open_cache(cfg: DataConfig, tower: ImageTower, split: str, progress: bool = True) -> EmbeddingCache:
    spec, folder = (cfg.train, cfg.train_cache) if split == "train" else (cfg.dev, cfg.dev_cache)
    views = cfg.views if split == "train" else 0
    if spec is None:  # an explicit cache made by `littune embed`
        cache = EmbeddingCache(folder)
        cache.check(tower)
        return cache
    opts = EmbedOptions(views=views, batch_size=cfg.embed_batch_size, num_workers=cfg.num_workers, engine=cfg.engine,
                        progress=progress)
    # folder None: the automatic cache of this data's content under cfg.cache_root
    return ensure_cache(spec, tower, folder, opts, cache_root=cfg.cache_root, **_source_kwargs(cfg, spec))


def _source_kwargs(cfg: DataConfig, spec: str) -> dict:
    if spec.endswith((".csv", ".tsv", ".jsonl")):
        return {"image_col": cfg.image_col, "caption_col": cfg.caption_col}
    return {}


def open_text_cache(cfg: DataConfig, tower, image_cache: EmbeddingCache, progress: bool = True) -> TextCache:
    """The locked text tower's features of every caption of ``image_cache`` (made once, then reused)."""
    texts = [c for caps in image_cache.captions for c in caps]
    folder = cfg.text_cache or text_cache_dir(image_cache.folder, tower)
    opts = TextEmbedOptions(engine=cfg.engine, progress=progress)
    return ensure_text_cache(texts, tower, folder, opts)


def open_prefix_cache(cfg, tower, image_cache: EmbeddingCache, progress: bool = True) -> PrefixCache:
    """``cfg``: model.text.prefix_cache. The token states after the locked groups of every caption of
    ``image_cache`` (built once, with a progress bar, then reused; another tower's is refused by name)."""
    check_prefix_tower(tower, cfg.k)
    texts = [c for caps in image_cache.captions for c in caps]
    folder = cfg.folder or prefix_cache_dir(image_cache.folder, tower, cfg.dtype)
    return ensure_prefix_cache(texts, tower, folder, PrefixOptions(dtype=cfg.dtype, progress=progress))


def caption_counts(captions: Sequence) -> np.ndarray:
    """(N,) captions per image: from the cache's Arrow column without Python lists, or by ``len``."""
    return captions.counts() if hasattr(captions, "counts") else np.array([len(c) for c in captions], np.int64)


class LargeCacheWarning(UserWarning):
    """Rows drawn uniformly from a cache larger than half the memory: steps may wait on the disk."""


def schedule_options(cache: EmbeddingCache | None, cfg: DataConfig) -> dict:
    """PairSchedule's shard options for ``cache``: its shards' boundaries and ``data.shuffle_buffer``;
    says so (never silently) when uniform sampling will read a cache larger than half the memory at random.
    ``cache`` None (live images): a shuffle buffer is refused, not ignored."""
    if cache is None:
        if cfg.shuffle_buffer:
            raise ValueError(f"data.shuffle_buffer={cfg.shuffle_buffer} reads the shards of an embedding cache, "
                             "and this run reads images (an unlocked image tower or data.use_cache=false); "
                             "set it to 0 (data.stream_buffer shuffles streamed shards)")
        return {}
    size = len(cache) * cache.embed_dim * np.dtype(cache.manifest.dtype).itemsize
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    if not cfg.shuffle_buffer and ram and size > ram / 2:
        warnings.warn(f"{cache.folder}: {size / 2**30:.1f} GiB of features, more than half of this machine's "
                      f"{ram / 2**30:.1f} GiB of memory, drawn uniformly at random: steps may wait on the disk. "
                      "data.shuffle_buffer=64 reads shards in a shuffled order through a buffer of 64 shards "
                      "(docs/caches.md: what it does to sampling)", LargeCacheWarning, stacklevel=2)
    return {"shard_starts": cache._starts, "buffer": cfg.shuffle_buffer}


class CachedBatches:
    """Batches of cached tower features: reading is a memory-mapped gather, nearly free.

    With a text cache (both towers locked) a batch carries the captions' features too, and the
    text tower never runs: caption c of image row r is text row ``offsets[r] + c``.
    With a prefix cache (a partly locked text tower) it carries the captions' token states after
    the locked groups instead, as ``text_tokens``, and only the unlocked layers run.
    With a shuffle buffer the cache holds the buffer's shards (+1: a batch may straddle two
    windows) in memory instead of mapping the whole file, so memory does not grow with the cache.
    """

    def __init__(self, cache: EmbeddingCache, schedule: PairSchedule, text_cache: TextCache | None = None,
                 prefix_cache: PrefixCache | None = None):
        self.cache, self.schedule, self.text_cache, self.prefix_cache = cache, schedule, text_cache, prefix_cache
        if schedule.buffer:
            cache.resident(schedule.buffer + 1)
        self.captions = cache.captions
        if text_cache is not None or prefix_cache is not None:  # (N,) first text row of each image
            self.offsets = np.concatenate([[0], np.cumsum(caption_counts(self.captions))[:-1]])

    def __call__(self, step: int) -> dict:
        rows, cap, view = self.schedule.batch(step)
        feats = self.cache.rows(rows, view if self.schedule.views else None)  # (B, D) float32
        caps = self.captions.take(rows) if hasattr(self.captions, "take") else [self.captions[r] for r in rows]
        batch = {"image_features": feats, "captions": [c[i] for c, i in zip(caps, cap)], "bad": []}
        if self.text_cache is not None:
            batch["text_features"] = self.text_cache.rows(self.offsets[rows] + cap)  # (B, D_txt) float32
        if self.prefix_cache is not None:  # {'prefix_states' (B, T, D), 'attention_mask' (B, T)}
            batch["text_tokens"] = self.prefix_cache.rows(self.offsets[rows] + cap)
        return batch

    def iterate(self, start: int, stop: int) -> Iterator[dict]:
        for step in range(start, stop):
            yield self(step)


class _LiveBatchDataset(Dataset):
    def __init__(self, items: list[ImageItem], schedule: PairSchedule, transform):
        self.items, self.schedule, self.transform = items, schedule, transform

    def __len__(self) -> int:  # steps are the index; the sampler bounds them
        return 1 << 62

    def __getitem__(self, step: int) -> dict:
        rows, cap, _ = self.schedule.batch(step)
        pixels, captions, bad = [], [], []
        with torch.random.fork_rng(devices=[]):  # without workers this runs in the trainer: keep its RNG
            # augmentation depends on the step and the process only (each process its own draws)
            torch.manual_seed(rank_seed(self.schedule.seed, self.schedule.rank) * 7919 + step)
            for r, c in zip(rows, cap):
                item = self.items[r]
                try:
                    pixels.append(self.transform(load_image(item.image, name=item.key)))
                    captions.append(item.captions[c])
                except BadImage as e:
                    bad.append((item.key, item.image_path, e.reason, str(e)))
        return {"pixels": torch.stack(pixels) if pixels else None, "captions": captions, "bad": bad}


class LiveBatches:
    """Batches of decoded images, for the unlocked settings and the locked-without-cache path."""

    def __init__(self, items: list[ImageItem], schedule: PairSchedule, transform, num_workers: int):
        self.items, self.schedule, self.num_workers = items, schedule, num_workers
        self.dataset = _LiveBatchDataset(items, schedule, transform)

    def iterate(self, start: int, stop: int) -> Iterator[dict]:
        # Its own generator: drawing the workers' base seed from the global one would shift the
        # dropout masks after a resume (the loader starts at another point of the stream).
        loader = DataLoader(self.dataset, batch_size=None, sampler=range(start, stop),
                            **loader_workers(self.num_workers), prefetch_factor=2 if self.num_workers else None,
                            generator=torch.Generator().manual_seed(self.schedule.seed))
        yield from loader


def live_items(cfg: DataConfig) -> list[ImageItem]:
    items, _bad = load_items(cfg.train, **_source_kwargs(cfg, cfg.train))
    return items
