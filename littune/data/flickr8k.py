"""Flickr8k: 8,091 photos with 5 captions each and the official train/dev/test split.

Expected layout (what ``littune.data.download.convert_flickr8k`` writes)::

    ROOT/images/*.jpg
    ROOT/captions.csv          header "image,caption", one row per caption
    ROOT/splits/{train,dev,test}.txt   one image file name per line

Besides iterating captions as ``Record``s (training), the class offers the grouped view that
retrieval evaluation needs: images in split order, captions grouped by image, and the index maps
between the two.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .images import BadInputLog
from .sources import CsvSource, Record

__all__ = ["Flickr8k", "SPLITS"]

SPLITS = ("train", "dev", "test", "all")


class Flickr8k:
    """One split of Flickr8k. ``split="all"`` is every image in captions.csv, in file order."""

    def __init__(self, root: str | Path, split: str = "train") -> None:
        self.root = Path(root)
        if split not in SPLITS:
            raise ValueError(f"Flickr8k split must be one of {SPLITS}, got {split!r}")
        self.split = split
        captions_file = self.root / "captions.csv"
        if not captions_file.is_file():
            raise FileNotFoundError(f"{captions_file}: not found (is {self.root} a Flickr8k folder?)")

        # The table parser's bad-row policy applies here too; its log is exposed as self.bad.
        table = CsvSource(captions_file, root=self.root / "images")
        by_image: dict[str, list[Record]] = {}
        for record in table:
            name = record.image_id
            by_image.setdefault(name, []).append(record)
        self.bad: BadInputLog = table.bad

        if split == "all":
            names = list(by_image)  # dicts keep first-appearance order
        else:
            names = self._read_split(self.root / "splits" / f"{split}.txt", by_image)
        self._names = names
        self._records = [by_image[name] for name in names]

    @staticmethod
    def _read_split(path: Path, by_image: dict[str, list[Record]]) -> list[str]:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: split file not found")
        names: list[str] = []
        for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            name = text.strip()
            if not name:
                continue
            if name not in by_image:
                raise ValueError(f"{path} line {line}: image {name!r} has no caption in captions.csv")
            names.append(name)
        if len(set(names)) != len(names):
            raise ValueError(f"{path}: lists some images more than once")
        return names

    def __iter__(self) -> Iterator[Record]:
        """One record per caption, grouped by image in split order; key ``IMAGE#n``."""
        for index, records in enumerate(self._records):
            for record in records:
                yield Record(record.key, record.image, record.caption, {"image_index": index}, record.image_key)

    def __len__(self) -> int:
        return sum(len(records) for records in self._records)

    def image_names(self) -> list[str]:
        """File names of the split's images, in split order."""
        return list(self._names)

    def images(self) -> list[str]:
        """Paths of the split's images, in split order."""
        return [str(records[0].image) for records in self._records]

    def captions(self) -> list[str]:
        """All captions, grouped by image (in the order of ``images()``)."""
        return [record.caption for records in self._records for record in records]

    def caption_to_image(self) -> list[int]:
        """For each caption in ``captions()``, the index of its image in ``images()``."""
        return [index for index, records in enumerate(self._records) for _ in records]

    def image_to_captions(self) -> list[list[int]]:
        """For each image in ``images()``, the indices of its captions in ``captions()``."""
        result: list[list[int]] = []
        start = 0
        for records in self._records:
            result.append(list(range(start, start + len(records))))
            start += len(records)
        return result
