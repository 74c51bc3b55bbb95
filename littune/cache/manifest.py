"""The embedding cache's manifest: what made the embeddings, so a stale cache is never used.

A cache is valid for a tower only if the tower's name, weight fingerprint and preprocessing all
match; ``check`` names the field that differs.
"""
from __future__ import annotations

import json
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


class CacheMismatch(ValueError):
    pass


class CacheCorrupt(CacheMismatch):
    """A cache whose files disagree with each other or with its manifest (``verify.py`` says how)."""


@dataclass
class Manifest:
    tower: str
    fingerprint: str
    preprocess: dict[str, Any]
    embed_dim: int
    dtype: str  # float16 | float32
    source: str  # the data spec, local paths absolute: where the data was when embedded (information)
    shard_size: int
    views: int = 0
    content: str = ""  # items.content_fingerprint: what the cache holds ("": made before it was recorded)
    n_items: int = 0  # images in the source (before bad ones were skipped)
    count: int = 0  # embeddings written (complete shards)
    n_captions: int = 0
    n_bad: int = 0
    # {"index", "count", "start", "end", "width", "dtype", "files": {path in the cache: SHA-256}}
    shards: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = False
    world_size: int = 1
    engine: str = ""  # what ran the tower (torch, openvino, onnx, torch-cuda): engines agree within towers/engine.py MAX_REL_DEVIATION
    format_version: int = FORMAT_VERSION
    precision: str = "fp32"  # what the tower computed in (model.image.cache_precision): fp32 | bf16

    @property
    def n_shards(self) -> int:
        return (self.n_items + self.shard_size - 1) // self.shard_size

    def write(self, folder: str | Path) -> Path:
        path = Path(folder) / MANIFEST
        tmp = path.with_suffix(".json.tmp")
        try:
            tmp.write_text(json.dumps(asdict(self), indent=2))
            os.replace(tmp, path)  # atomic: a kill never leaves half a manifest
        except BaseException:  # a full disk: the old manifest stays, no half-written file
            tmp.unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def read(cls, folder: str | Path) -> "Manifest":
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not an embedding cache (no {MANIFEST}); "
                                    f"make one with `littune embed --data ... --out {folder}`")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CacheCorrupt(f"{path}: not valid JSON ({e}), so nothing in {folder} can be trusted\n"
                               f"  delete {folder} and run `littune embed` again") from None
        if not isinstance(data, dict):
            raise CacheCorrupt(f"{path}: not a JSON object; delete {folder} and run `littune embed` again")
        if data.get("format_version") != FORMAT_VERSION:
            raise CacheMismatch(f"{path}: format_version {data.get('format_version')} != {FORMAT_VERSION}")
        names = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        unknown, missing = sorted(set(data) - names), sorted(required - set(data))
        if unknown or missing:
            raise CacheCorrupt(f"{path}: " + "; ".join(
                ([f"unknown fields {unknown}"] if unknown else []) + ([f"missing fields {missing}"] if missing else []))
                + f"\n  delete {folder} and run `littune embed` again")
        return cls(**data)

    def identity(self) -> dict[str, Any]:
        return {"tower": self.tower, "fingerprint": self.fingerprint, "preprocess": self.preprocess,
                "embed_dim": self.embed_dim, "precision": self.precision}

    def check(self, tower: str, fingerprint: str, preprocess: dict[str, Any], embed_dim: int,
              where: str = "", precision: str = "fp32") -> None:
        """Raise CacheMismatch naming every field that differs from the given tower's."""
        if "input_size" in self.preprocess and "resize_mode" not in self.preprocess:
            raise CacheMismatch(f"embedding cache {where} does not record how its images were resized (no "
                                "preprocess.resize_mode: made by an older littune, which also rounded the resize "
                                "size where timm floors it), so its view of the images is unknown; re-embed with "
                                "`littune embed` into a new folder")
        want = {"tower": tower, "fingerprint": fingerprint, "preprocess": preprocess, "embed_dim": embed_dim,
                "precision": precision}
        have = self.identity()
        diffs = [f"{k}: cache has {have[k]!r}, model has {want[k]!r}" for k in want if have[k] != want[k]]
        if diffs:
            raise CacheMismatch(f"embedding cache {where} was made by another image tower, refusing "
                                "to use it:\n  " + "\n  ".join(diffs)
                                + "\nre-embed with `littune embed` into a new folder")
