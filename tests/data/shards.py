"""Writing WebDataset shards for the tests: members in the order given, as img2dataset writes them."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path


def write_tar(path: Path, files: list[tuple[str, bytes]]) -> Path:
    """A shard of KEY.ext members (grouped by key when the caller lists them so)."""
    with tarfile.open(path, "w") as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path
