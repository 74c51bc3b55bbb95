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
    """Records (key, image, caption) -> unique images in first-seen order, captions gathered."""
    by_image: dict[str, ImageItem] = {}
    items: list[ImageItem] = []
    for r in records:
        ref = r.image if isinstance(r.image, str) else f"bytes:{r.key}"
        item = by_image.get(ref)
        if item is None:
            base = r.key.split("#", 1)[0] if isinstance(r.image, str) else r.key
            item = by_image[ref] = ImageItem(base, r.image)
            items.append(item)
        item.captions.append(r.caption)
    return items


def load_items(spec: str, **source_kwargs) -> tuple[list[ImageItem], BadInputLog]:
    """Open a source spec (csv/tsv/jsonl/WebDataset/flickr8k), return its images and bad rows."""
    from ..data.sources import open_source

    source = open_source(spec, **source_kwargs)
    items = group_records(source)
    if not items:
        raise ValueError(f"{spec}: no usable image-caption records"
                         + (f" ({len(source.bad)} bad rows: {source.bad.counts()})" if len(source.bad) else ""))
    return items, source.bad
