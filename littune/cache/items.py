"""The unique images of an image-text source, each with all its captions.

Sources yield one record per caption; the cache stores one embedding per image. Grouping keeps
Flickr8k's five captions of an image together (for training, one is drawn per epoch; for
retrieval, all five are positives of that image).

Image paths are made absolute here, so a cache's ``image_path`` column opens from any working
folder (clip-retrieval's tools read it as is), and ``content_fingerprint`` names what a source
holds however its path was spelled: automatic caches are found and checked by it (naming.py).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Iterable

from ..data.images import BadInputLog


@dataclass
class ImageItem:
    key: str  # unique within the data set (the image path relative to its root, or the WDS key)
    image: str | bytes  # a path, or the encoded bytes for streamed sources
    captions: list[str] = field(default_factory=list)

    @property
    def image_path(self) -> str:
        return self.image if isinstance(self.image, str) else ""


def group_records(records: Iterable) -> list[ImageItem]:
    """Records (key, image, caption) -> unique images in first-seen order, captions gathered.

    Records naming one image (the same ``image_id``, however its path was spelled) are one item
    with all their captions; caption-less records (``folder:`` sources) give items without any.
    """
    by_image: dict[str, ImageItem] = {}
    items: list[ImageItem] = []
    for r in records:
        key = r.image_id
        item = by_image.get(key)
        if item is None:
            item = by_image[key] = ImageItem(key, r.image)
            items.append(item)
        if r.caption:
            item.captions.append(r.caption)
    return items


def load_items(spec: str, **source_kwargs) -> tuple[list[ImageItem], BadInputLog]:
    """Open a source spec (csv/tsv/jsonl/WebDataset/flickr8k), return its images and bad rows."""
    from ..data.open import open_source

    source = open_source(spec, **source_kwargs)
    items = group_records(source)
    for it in items:  # absolute (symlinks kept as spelled): the paths open from any working folder
        if isinstance(it.image, str) and not os.path.isabs(it.image):
            it.image = os.path.abspath(it.image)
    if not items and spec.startswith("folder:"):
        from ..data.folders import IMAGE_EXTENSIONS

        raise ValueError(f"{spec[len('folder:'):]}: no images found (extensions {' '.join(sorted(IMAGE_EXTENSIONS))})")
    if not items:
        raise ValueError(f"{spec}: no usable image-caption records"
                         + (f" ({len(source.bad)} bad rows: {source.bad.counts()})" if len(source.bad) else ""))
    return items, source.bad


def content_fingerprint(items: list[ImageItem]) -> str:
    """SHA-256 over the sorted (key, file size, captions) of every image: what a source holds.

    Cheap (one ``stat`` per file, no decoding) and blind to the path the data was reached by:
    keys are relative to the source's root. A missing file counts as size -1, so its arrival
    changes the fingerprint; an image rewritten with exactly the same size does not (the price of
    not reading every file).
    """
    h = hashlib.sha256()
    for key, size, captions in sorted(((it.key, _size(it.image), it.captions) for it in items), key=lambda t: t[0]):
        h.update(json.dumps([key, size, captions], ensure_ascii=False).encode("utf-8", "surrogatepass"))
        h.update(b"\n")
    return h.hexdigest()


def _size(image: str | bytes) -> int:
    if isinstance(image, bytes):
        return len(image)
    try:
        return os.stat(image).st_size
    except OSError:
        return -1
