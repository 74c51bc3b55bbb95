"""Decoding and preprocessing images in DataLoader workers, with the bad-input policy applied.

``DecodeDataset(images, names=..., transform=...)`` yields ``(i, pixels (1+V, 3, H, W), "")`` for
a good image and ``(i, None, (reason, message))`` for one that cannot be used; ``collate_decoded``
batches the good ones and passes the bad ones on, so a caller can skip and list them.
With ``hashes=True`` a good image's third field is the (SHA-256, size) of the bytes it was decoded
from, and ``collate_hashed`` passes them on: the cache's per-shard content fingerprint costs no
second read of any file.
"""
from __future__ import annotations

import hashlib
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset

from .images import DEFAULT_MAX_PIXELS, BadImage, load_image, read_image_bytes

__all__ = ["DecodeDataset", "collate_decoded", "collate_hashed"]


class DecodeDataset(Dataset):
    """Decodes and preprocesses one image (plus its augmented views) in a DataLoader worker."""

    def __init__(self, images: Sequence[str | bytes], *, names: Sequence[str] | None = None,
                 transform: Callable, view_transform: Callable | None = None, views: int = 0,
                 seed: int = 0, offset: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS, hashes: bool = False):
        """``images``: paths or encoded bytes; ``names``: what error messages call them; ``offset``:
        the global index of ``images[0]`` (views are seeded by global index, so they do not depend
        on how the data set was split into shards, workers or batches)."""
        if views and view_transform is None:
            raise ValueError("views > 0 needs a view_transform")
        self.images, self.names = list(images), list(names) if names is not None else None
        self.transform, self.view_transform, self.views = transform, view_transform, views
        self.seed, self.offset, self.max_pixels, self.hashes = seed, offset, max_pixels, hashes

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        name = self.names[i] if self.names is not None else None
        source, digest = self.images[i], ""
        try:
            if self.hashes:  # read once: the bytes hashed are the bytes decoded
                source = source if isinstance(source, (bytes, bytearray)) else read_image_bytes(source, name=name)
                digest = (hashlib.sha256(source).hexdigest(), len(source))
            img = load_image(source, max_pixels=self.max_pixels, name=name)
        except BadImage as e:
            return i, None, (e.reason, str(e))
        x = [self.transform(img)]
        if self.views:
            # Seeded per image, so views do not depend on workers, batches or resumption.
            torch.manual_seed(self.seed * 1_000_003 + self.offset + i)
            x += [self.view_transform(img) for _ in range(self.views)]
        return i, torch.stack(x), digest  # (1+V, 3, H, W)


def collate_hashed(batch):
    """[(i, pixels | None, bad or digest)] -> (kept indices, pixels (B, 1+V, 3, H, W) | None, [(i, bad)],
    [(SHA-256, size)] of the kept images)."""
    good = [(i, x, d) for i, x, d in batch if x is not None]
    bad = [(i, r) for i, x, r in batch if x is None]
    if not good:
        return [], None, bad, []
    return [i for i, _, _ in good], torch.stack([x for _, x, _ in good]), bad, [d for _, _, d in good]


def collate_decoded(batch):
    """[(i, pixels | None, bad)] -> (kept indices, pixels (B, 1+V, 3, H, W) | None, [(i, bad)])."""
    return collate_hashed(batch)[:3]
