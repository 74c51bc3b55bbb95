"""The embedding cache's manifest: what made the embeddings, so a stale cache is never used.

A cache is valid for a tower only if the tower's name, weight fingerprint and preprocessing all
match; ``check`` names the field that differs.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


class CacheMismatch(ValueError):
    pass


@dataclass
class Manifest:
    tower: str
    fingerprint: str
    preprocess: dict[str, Any]
    embed_dim: int
    dtype: str  # float16 | float32
    source: str
    shard_size: int
    views: int = 0
    n_items: int = 0  # images in the source (before bad ones were skipped)
    count: int = 0  # embeddings written (complete shards)
    n_captions: int = 0
    n_bad: int = 0
    shards: list[dict[str, Any]] = field(default_factory=list)  # {"index", "count", "start", "end"}
    complete: bool = False
    world_size: int = 1
    engine: str = ""  # what ran the tower (torch, openvino, onnx, torch-cuda): engines agree to cosine 0.999
    format_version: int = FORMAT_VERSION

    @property
    def n_shards(self) -> int:
        return (self.n_items + self.shard_size - 1) // self.shard_size

    def write(self, folder: str | Path) -> Path:
        path = Path(folder) / MANIFEST
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, path)  # atomic: a kill never leaves half a manifest
        return path

    @classmethod
    def read(cls, folder: str | Path) -> "Manifest":
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not an embedding cache (no {MANIFEST}); "
                                    f"make one with `littune embed --data ... --out {folder}`")
        data = json.loads(path.read_text())
        if data.get("format_version") != FORMAT_VERSION:
            raise CacheMismatch(f"{path}: format_version {data.get('format_version')} != {FORMAT_VERSION}")
        return cls(**data)

    def identity(self) -> dict[str, Any]:
        return {"tower": self.tower, "fingerprint": self.fingerprint, "preprocess": self.preprocess,
                "embed_dim": self.embed_dim}

    def check(self, tower: str, fingerprint: str, preprocess: dict[str, Any], embed_dim: int,
              where: str = "") -> None:
        """Raise CacheMismatch naming every field that differs from the given tower's."""
        want = {"tower": tower, "fingerprint": fingerprint, "preprocess": preprocess, "embed_dim": embed_dim}
        have = self.identity()
        diffs = [f"{k}: cache has {have[k]!r}, model has {want[k]!r}" for k in want if have[k] != want[k]]
        if diffs:
            raise CacheMismatch(f"embedding cache {where} was made by another image tower, refusing "
                                "to use it:\n  " + "\n  ".join(diffs)
                                + "\nre-embed with `littune embed` into a new folder")
