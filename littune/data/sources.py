"""Image-text data sources: CSV/TSV, JSON lines, WebDataset shards (``open.py`` picks one by spec).

Every source yields ``Record``s; ``image`` is a file path (str) or the encoded bytes, decoding is
left to ``littune.data.images.load_image`` so it can run in DataLoader workers. Tables are read
by the one strict reader in ``tables.py``. Malformed rows never crash a source: they are skipped
and recorded in ``source.bad`` (a ``BadInputLog``, reset at the start of each pass).
"""

from __future__ import annotations

import json
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from littune.data.images import BadInputLog, regular_file_problem
from littune.data.tables import csv_header, csv_rows, jsonl_rows

__all__ = [
    "Record",
    "Source",
    "CsvSource",
    "JsonlSource",
    "WebDatasetSource",
    "IMAGE_EXTENSIONS_WDS",
]


@dataclass(frozen=True)
class Record:
    """One image-caption pair. ``key`` is unique within its source (one per caption);
    ``image_key`` names the image (its normalised path relative to the source root, or the
    WebDataset key), so rows naming one file however spelled are one image."""

    key: str
    image: str | bytes
    caption: str
    meta: dict[str, Any] = field(default_factory=dict)
    image_key: str = ""

    @property
    def image_id(self) -> str:
        return self.image_key or self.key


class Source(Protocol):
    """What every source offers."""

    bad: BadInputLog

    def __iter__(self) -> Iterator[Record]: ...


def require_regular_file(path: Path) -> None:
    """Refuse a data file that is missing or not a regular file (a FIFO would block the read)."""
    try:
        kind = regular_file_problem(os.stat(path).st_mode)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    if kind:
        raise ValueError(f"{path}: {kind}, not a regular file; littune reads data only from regular files")


# Undecodable bytes read with errors="surrogateescape" become lone surrogates in this range.
_SURROGATES = re.compile("[\udc80-\udcff]")


class _TableSource:
    """Shared logic of CSV and JSONL: turn (line, fields) rows into Records or bad entries."""

    def __init__(
        self,
        path: str | Path,
        image_col: str,
        caption_col: str,
        root: str | Path | None,
    ) -> None:
        self.path = Path(path)
        require_regular_file(self.path)
        self.image_col = image_col
        self.caption_col = caption_col
        # Relative image paths are resolved against root, else against the table's folder.
        self.root = Path(root) if root is not None else self.path.parent
        self._root_text = str(self.root)
        self.bad = BadInputLog()
        self._len: int | None = None

    def _rows(self) -> Iterator[tuple[int, dict[str, Any] | str]]:
        """Yield (line number, field dict) or (line number, reason) for unparsable rows."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[Record]:
        self.bad = BadInputLog()
        seen: dict[str, int] = {}  # image key -> captions so far, for the "#n" suffix
        count = 0
        for line, row in self._rows():
            where = f"{self.path.name}:{line}"
            if isinstance(row, str):
                self.bad.add(where, str(self.path), row, f"{self.path} line {line}: {row}")
                continue
            record = self._record(where, line, row, seen)
            if record is not None:
                count += 1
                yield record
        self._len = count

    def _record(self, where: str, line: int, row: dict[str, Any], seen: dict[str, int]) -> Record | None:
        image = row.get(self.image_col)
        caption = row.get(self.caption_col)
        reason = None
        if not isinstance(image, str) or not image.strip():
            reason = "missing image field"
        elif _SURROGATES.search(image):
            reason = "non-UTF-8 image path"
        elif caption is None:
            reason = "missing caption field"
        elif not isinstance(caption, str):
            reason = "caption is not a string"
        elif _SURROGATES.search(caption):
            reason = "non-UTF-8 caption"
        elif not caption.strip():
            reason = "empty caption"
        if reason is not None:
            image_text = image if isinstance(image, str) else ""
            self.bad.add(where, image_text, reason, f"{self.path} line {line}: {reason}")
            return None

        image = image.strip()
        rel = self._relative(image)
        n = seen.get(rel, 0)
        seen[rel] = n + 1
        meta = {k: v for k, v in row.items() if k not in (self.image_col, self.caption_col) and k is not None}
        # os.path rather than pathlib here: this runs once per row, and pathlib is several
        # times slower on tables with millions of rows.
        return Record(key=f"{rel}#{n}", image=os.path.join(self._root_text, rel) if not os.path.isabs(rel) else rel,
                      caption=caption.strip(), meta=meta, image_key=rel)

    def _relative(self, image: str) -> str:
        """The image path relative to root (normalised, POSIX style), used as the key."""
        if os.path.isabs(image):
            rel = os.path.relpath(image, self._root_text)
            if not rel.startswith(".."):
                image = rel
            # else: outside root, the absolute path is the key
        return os.path.normpath(image).replace(os.sep, "/")

    def __len__(self) -> int:
        """Number of valid records; the first call reads the whole table (no image decoding)."""
        if self._len is None:
            for _ in self:  # sets self._len (and self.bad) at the end of the pass
                pass
        assert self._len is not None
        return self._len


class CsvSource(_TableSource):
    """A CSV or TSV file with a header row naming the image and caption columns.

    ``sep`` defaults to a tab for ``.tsv``/``.tab`` files and a comma otherwise. Fields are
    quoted the way Python's csv module and pandas write them (quotes only where needed); the
    rows are read strictly (``tables.py``): a malformed one is listed as bad, never folded in.
    """

    def __init__(
        self,
        path: str | Path,
        image_col: str = "image",
        caption_col: str = "caption",
        root: str | Path | None = None,
        sep: str | None = None,
    ) -> None:
        super().__init__(path, image_col, caption_col, root)
        if sep is None:
            sep = "\t" if self.path.suffix.lower() in (".tsv", ".tab") else ","
        self.sep = sep
        header = csv_header(self.path, sep)
        missing = [c for c in (image_col, caption_col) if c not in header]
        if missing:
            raise ValueError(
                f"{self.path}: header lacks column(s) {missing}; columns found: {header} "
                f"(separator {sep!r}; pass image_col=/caption_col= to choose others)"
            )

    def _rows(self) -> Iterator[tuple[int, dict[str, Any] | str]]:
        return csv_rows(self.path, self.sep)


class JsonlSource(_TableSource):
    """A JSON-lines file: one object per line with image and caption fields."""

    def __init__(
        self,
        path: str | Path,
        image_col: str = "image",
        caption_col: str = "caption",
        root: str | Path | None = None,
    ) -> None:
        super().__init__(path, image_col, caption_col, root)

    def _rows(self) -> Iterator[tuple[int, dict[str, Any] | str]]:
        return jsonl_rows(self.path)


# Image extensions img2dataset may write, in order of preference.
IMAGE_EXTENSIONS_WDS = ("jpg", "jpeg", "png", "webp")


def expand_shards(urls: str | Path | list[str]) -> list[str]:
    """Expand a shard spec into a list: a directory of .tar files, a brace pattern, or a list."""
    if isinstance(urls, (list, tuple)):
        return [str(u) for u in urls]
    spec = str(urls)
    if os.path.isdir(spec):
        shards = sorted(str(p) for p in Path(spec).glob("*.tar"))
        if not shards:
            raise ValueError(f"{spec}: directory holds no .tar shards")
        return shards
    from webdataset.shardlists import expand_urls  # braces and "::"-joined lists

    return expand_urls(spec)


def _is_local(url: str) -> bool:
    """A plain file path, as opposed to a URL or webdataset's ``pipe:``/``file:`` schemes."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", url) is None


class WebDatasetSource:
    """WebDataset tar shards in img2dataset's layout: ``KEY.jpg`` + ``KEY.txt`` [+ ``KEY.json``].

    ``shards`` is the expanded shard list. No node/worker splitting happens here: to split
    across processes, build one source per subset of ``shards``.
    """

    def __init__(self, urls: str | Path | list[str]) -> None:
        self.shards = expand_shards(urls)
        if not self.shards:
            raise ValueError(f"{urls}: no shards")
        missing = [s for s in self.shards if _is_local(s) and not os.path.exists(s)]
        if missing:
            raise FileNotFoundError(f"missing shard(s): {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        self.bad = BadInputLog()

    def __iter__(self) -> Iterator[Record]:
        # webdataset's own tar reader and key grouping, one shard at a time: unlike the
        # wds.WebDataset pipeline this closes each shard file deterministically, and an unreadable
        # shard is recorded in self.bad instead of ending the whole pass.
        from webdataset import gopen
        from webdataset.tariterators import group_by_keys, tar_file_expander

        self.bad = BadInputLog()
        for shard in self.shards:
            kind = regular_file_problem(os.stat(shard).st_mode) if _is_local(shard) and os.path.exists(shard) else ""
            if kind:  # opening a FIFO would wait for a writer forever
                self.bad.add(shard, shard, "not a regular file", f"{shard}: {kind}")
                continue
            try:
                with gopen(shard) as stream:
                    files = tar_file_expander([{"url": shard, "stream": stream}])
                    for sample in group_by_keys(files):
                        record = self._record(sample)
                        if record is not None:
                            yield record
            except (OSError, tarfile.TarError, ValueError) as exc:
                self.bad.add(shard, shard, "unreadable shard", f"{shard}: {type(exc).__name__}: {exc}")

    def _record(self, sample: dict[str, Any]) -> Record | None:
        key = sample["__key__"]
        shard = sample.get("__url__", "")
        image = next((sample[ext] for ext in IMAGE_EXTENSIONS_WDS if ext in sample), None)
        reason, meta, caption = None, {}, ""
        if image is None:
            reason = "missing image file"
        elif "txt" not in sample:
            reason = "missing caption file"
        else:
            try:
                caption = sample["txt"].decode("utf-8").strip()
            except UnicodeDecodeError:
                reason = "non-UTF-8 caption"
            if reason is None and not caption:
                reason = "empty caption"
            if reason is None and "json" in sample:
                try:
                    meta = json.loads(sample["json"])
                except (json.JSONDecodeError, UnicodeDecodeError):
                    reason = "bad JSON"
        if reason is not None:
            self.bad.add(key, shard, reason, f"{shard} sample {key}: {reason}")
            return None
        return Record(key=key, image=bytes(image), caption=caption, meta=meta if isinstance(meta, dict) else {"json": meta},
                      image_key=key)
