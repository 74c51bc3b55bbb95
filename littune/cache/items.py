"""The unique images of an image-text source, each with all its captions.

Sources yield one record per caption; the cache stores one embedding per image. Grouping keeps
Flickr8k's five captions of an image together (for training, one is drawn per epoch; for
retrieval, all five are positives of that image).
"""
from __future__ import annotations

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
    if not items and spec.startswith("folder:"):
        from ..data.folders import IMAGE_EXTENSIONS

        raise ValueError(f"{spec[len('folder:'):]}: no images found (extensions {' '.join(sorted(IMAGE_EXTENSIONS))})")
    if not items:
        raise ValueError(f"{spec}: no usable image-caption records"
                         + (f" ({len(source.bad)} bad rows: {source.bad.counts()})" if len(source.bad) else ""))
    return items, source.bad
