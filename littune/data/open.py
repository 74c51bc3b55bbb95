"""Pick the source a data spec names: a table, WebDataset shards, Flickr8k or a folder of images.

    open_source("pairs.csv")                      CsvSource (also .tsv), JsonlSource for .jsonl
    open_source("shards/{00000..00009}.tar")      WebDatasetSource (a .tar, a brace pattern, a folder of .tar)
    open_source("flickr8k:DIR:test")              Flickr8k (split train | dev | test | all)
    open_source("folder:DIR")                     FolderSource: every image under DIR, no captions
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .flickr8k import SPLITS, Flickr8k
from .folders import FolderSource
from .sources import CsvSource, JsonlSource, Source, WebDatasetSource

__all__ = ["open_source", "ACCEPTED"]

ACCEPTED = (
    "a .csv or .tsv file, a .jsonl file, a .tar shard, a brace pattern of shards "
    "(e.g. shards/{00000..00009}.tar), a directory of .tar shards, "
    "flickr8k:DIR[:train|dev|test|all], a Flickr8k directory (captions.csv + splits/), or folder:DIR "
    "(every image under DIR)"
)


def open_source(spec: str | Path, **kwargs: Any) -> Source:
    """Pick and build the source that ``spec`` names; ``kwargs`` go to its constructor."""
    text = str(spec)
    if text.startswith("folder:"):
        return FolderSource(text[len("folder:"):], **kwargs)
    if text.startswith("flickr8k:"):
        rest = text[len("flickr8k:") :]
        head, _, tail = rest.rpartition(":")
        if head and tail in SPLITS:
            return Flickr8k(head, split=tail, **kwargs)
        return Flickr8k(rest, **kwargs)
    if os.path.isdir(text):
        folder = Path(text)
        if (folder / "captions.csv").is_file() and (folder / "splits").is_dir():
            return Flickr8k(folder, **kwargs)
        if any(folder.glob("*.tar")):
            return WebDatasetSource(text, **kwargs)
        raise ValueError(f"{text}: directory is neither a Flickr8k folder nor holds .tar shards; accepted: {ACCEPTED}")
    lower = text.lower()
    if lower.endswith((".csv", ".tsv")):
        return CsvSource(text, **kwargs)
    if lower.endswith(".jsonl"):
        return JsonlSource(text, **kwargs)
    if lower.endswith(".tar") or ("{" in text and ".tar" in lower) or "::" in text:
        return WebDatasetSource(text, **kwargs)
    raise ValueError(f"cannot tell what data source {text!r} is; accepted: {ACCEPTED}")
