"""The text-side cache: a locked text tower's pooled features for every caption, computed once.

With both towers locked (``LL``, the FuseMix / ShareLock setting) a training step is a few matrix
products on two caches; the text tower itself never runs during training or evaluation.

Layout (the image cache's rules: sharded, resumable, written atomically, a manifest last):
    txt_emb/txt_emb_{k}.npy   (n_k, D) float16/float32 features of texts [k*S, (k+1)*S)
    manifest.json             kind "text": tower, weight fingerprint, tokenizer fingerprint, context
                              length, embed size, dtype, the texts' count and SHA-256, shards and
                              each shard file's SHA-256
Texts are the captions of an image cache in its order (image rows, each image's captions in
turn), so caption c of image row r is text row ``offsets[r] + c``. A cache made by another tower,
tokenizer or context length is refused by name, and so is one made for other texts. Opening checks
each shard's rows, width and dtype (a damaged shard is refused by name); embedding again re-embeds
only the shards that fail that check.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .manifest import CacheCorrupt, CacheMismatch
from .verify import VerifyReport, npy_header, sha256_file
from .writer import CacheRepair, save_atomic, save_npy

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


@dataclass
class TextEmbedOptions:
    shard_size: int = 50_000  # texts per shard (a shard of MiniLM features takes ~1-4 minutes here)
    batch_size: int = 256
    dtype: str = "float16"
    engine: str = "auto"  # torch | openvino | onnx | auto (towers/engine.py)
    threads: int | None = None
    progress: bool = True


@dataclass
class TextManifest:
    tower: str
    fingerprint: str  # the text tower's weights
    tokenizer: str  # the tokenizer's fingerprint (its definition and context length)
    context_length: int
    embed_dim: int
    dtype: str
    n_texts: int
    texts_sha256: str
    shard_size: int
    shards: list[int] = field(default_factory=list)  # rows per finished shard
    files: dict[str, str] = field(default_factory=dict)  # shard file (path in the cache) -> SHA-256
    complete: bool = False
    engine: str = ""
    kind: str = "text"
    format_version: int = FORMAT_VERSION
    precision: str = "fp32"  # what the tower computed in (model.text.cache_precision): fp32 | bf16

    def write(self, folder: Path) -> None:
        save_atomic(Path(folder) / MANIFEST, lambda p: p.write_text(json.dumps(asdict(self), indent=2)))

    @classmethod
    def read(cls, folder: str | Path) -> "TextManifest":
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not a {cls.kind} cache (no {MANIFEST})")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise CacheMismatch(f"{path}: not valid JSON ({e}); delete {folder} to rebuild it") from None
        if not isinstance(data, dict) or data.get("kind") != cls.kind or data.get("format_version") != cls.format_version:
            raise CacheMismatch(f"{path}: not a littune {cls.kind} cache v{cls.format_version}")
        try:
            return cls(**data)
        except TypeError as e:  # unknown or missing fields
            raise CacheCorrupt(f"{path}: {e}; delete {folder} to rebuild it") from None

    @classmethod
    def is_text(cls, folder: str | Path) -> bool:
        """Whether ``folder`` holds this kind's manifest (a damaged one counts)."""
        try:
            return json.loads((Path(folder) / MANIFEST).read_text()).get("kind") == cls.kind
        except FileNotFoundError:
            return False
        except (ValueError, AttributeError, OSError):
            return (Path(folder) / cls.shard_files(0)[0]).parent.is_dir()

    def identity(self) -> dict[str, Any]:
        return {"tower": self.tower, "fingerprint": self.fingerprint, "tokenizer": self.tokenizer,
                "context_length": self.context_length, "embed_dim": self.embed_dim, "precision": self.precision}

    @property
    def n_shards(self) -> int:
        return (self.n_texts + self.shard_size - 1) // self.shard_size

    def shard_rows(self, k: int) -> int:
        return min(self.shard_size, self.n_texts - k * self.shard_size)

    @staticmethod
    def shard_files(k: int) -> list[str]:
        """Shard ``k``'s files, as paths in the cache (the prefix cache has two per shard)."""
        return [f"txt_emb/txt_emb_{k}.npy"]

    def shard_problems(self, folder: Path, k: int) -> list[str]:
        """What is wrong with shard ``k``'s file (its header and size against the manifest); empty: fine."""
        name = self.shard_files(k)[0]
        return _npy_problems(folder, name, (self.shard_rows(k), self.embed_dim), self.dtype)


def tower_identity(tower) -> dict[str, Any]:
    """What a text cache must have been made by: the tower's name, weights, tokenizer, context length,
    and the precision it computes its caches in (towers/engine.py)."""
    return {"tower": tower.name, "fingerprint": tower.fingerprint(), "tokenizer": tower.tokenizer.fingerprint(),
            "context_length": tower.context_length, "embed_dim": tower.embed_dim,
            "precision": getattr(tower, "cache_precision", "fp32")}


def texts_sha256(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def _shard_file(k: int) -> str:
    return TextManifest.shard_files(k)[0]


def _shard_path(out: Path, k: int) -> Path:
    return out / _shard_file(k)


def _npy_problems(folder: Path, name: str, shape: tuple[int, ...], dtype: str) -> list[str]:
    """What is wrong with the .npy file ``name`` against the shape and dtype a manifest gives; empty: fine."""
    header = npy_header(Path(folder), name)
    if isinstance(header, str):
        return [header]
    got, got_dtype = header
    problems = [f"{name} has shape {' x '.join(map(str, got))}, the manifest says {' x '.join(map(str, shape))}"
                ] if got != shape else []
    return problems + ([f"{name} holds {got_dtype}, the manifest says {dtype}"] if got_dtype != np.dtype(dtype) else [])


def open_finished(folder: Path, what: str, manifest_cls: type = TextManifest):
    """The manifest of a finished text (or prefix) cache whose shards' headers and sizes check out
    (cheap, so every open does it); an unfinished or damaged cache is refused naming the folder."""
    m = manifest_cls.read(folder)
    if not m.complete:
        raise CacheMismatch(f"{folder}: {what} did not finish; run the same command again")
    report = check_text_cache(folder, hashes=False, manifest_cls=manifest_cls)
    if not report.ok:
        raise report.error()
    return m


def check_text_cache(folder: str | Path, hashes: bool = True, manifest_cls: type = TextManifest) -> VerifyReport:
    """Check every shard of a finished text (or prefix) cache (``hashes``: also each file's SHA-256)."""
    folder = Path(folder)
    m = manifest_cls.read(folder)
    report = VerifyReport(folder, m.kind, n_shards=m.n_shards,
                          repair=f"delete the damaged files (or {folder}): the next `littune train` or `eval` "
                                 "that uses this cache embeds what is missing again")
    if not m.complete:
        report.problems[-1] = [f"{m.kind} embedding did not finish"]
        return report
    for k in range(m.n_shards):
        found = m.shard_problems(folder, k)
        for name in m.shard_files(k) if not found and hashes else []:
            digest = m.files.get(name)
            if digest is None:
                found.append(f"{name}: no SHA-256 recorded (made by an older littune)")
            elif sha256_file(folder / name) != digest:
                found.append(f"{name}: SHA-256 differs from the one recorded when it was written")
            else:
                report.n_files += 1
        if found:
            report.problems[k] = found
    return report


def _refuse(where: Path, diffs: list[str], what: str, kind: str = "text") -> None:
    if diffs:
        raise CacheMismatch(f"{kind} cache {where} was made {what}, refusing to use it:\n  " + "\n  ".join(diffs)
                            + f"\ndelete it (or choose another folder) to re-embed")


def refuse_unless_made_by(folder: Path, manifest: TextManifest, want: dict, by: str,
                          texts: Sequence[str] | None = None, kind: str = "text") -> None:
    """Refuse a cache whose manifest's identity differs from ``want`` (``by``: what else could have made
    it), or that was made for other texts than ``texts`` (when given)."""
    have = manifest.identity()
    _refuse(folder, [f"{k}: cache has {have[k]!r}, tower has {want[k]!r}" for k in want if have[k] != want[k]],
            by, kind)
    if texts is not None:
        texts = list(texts)
        diffs = []
        if len(texts) != manifest.n_texts:
            diffs.append(f"n_texts: cache has {manifest.n_texts}, data has {len(texts)}")
        elif texts_sha256(texts) != manifest.texts_sha256:
            diffs.append("texts: same count, other captions (SHA-256 differs)")
        _refuse(folder, diffs, "for other texts", kind)


def begin_shards(out: Path, manifest: TextManifest, what: str) -> list[int]:
    """Start or resume writing a sharded cache at ``out``: refuse one made otherwise (``what``: by whom),
    write the unfinished manifest, and return the shards to (re)compute (missing or broken ones)."""
    try:
        old = type(manifest).read(out)
    except FileNotFoundError:
        old = None
    kind = manifest.kind
    if old is not None:
        have, want = old.identity(), manifest.identity()
        _refuse(out, [f"{k}: cache has {have[k]!r}, tower has {v!r}" for k, v in want.items() if have[k] != v],
                what, kind)
        _refuse(out, [f"{k}: {getattr(old, k)!r} -> {getattr(manifest, k)!r}"
                      for k in ("dtype", "n_texts", "texts_sha256", "shard_size") if getattr(old, k) != getattr(manifest, k)],
                "for other texts or settings", kind)
    out.mkdir(parents=True, exist_ok=True)
    todo = []
    for k in range(manifest.n_shards):
        problems = manifest.shard_problems(out, k)
        if problems and any((out / f).exists() for f in manifest.shard_files(k)):
            warnings.warn(f"{out}: {kind} shard {k} is broken ({'; '.join(problems)}): embedding it again", CacheRepair)
        if problems:
            todo.append(k)
    # SHA-256s of the good shards, as taken when they were written (a resume never re-takes them)
    redo = {f for k in todo for f in manifest.shard_files(k)}
    every = {f for k in range(manifest.n_shards) for f in manifest.shard_files(k)}
    manifest.files = {f: h for f, h in (old.files if old else {}).items() if f in every - redo}
    manifest.engine = old.engine if old and not todo else ""
    manifest.write(out)
    return todo


def finish_shards(out: Path, manifest: TextManifest, shards: list[int]) -> None:
    """Record every shard's rows and files' SHA-256 (kept for the shards a resume did not redo) and
    write the manifest complete: the last write, so a cache without it is unfinished."""
    manifest.shards = shards
    manifest.files = {f: manifest.files.get(f) or sha256_file(out / f)
                      for k in range(manifest.n_shards) for f in manifest.shard_files(k)}  # in shard order
    manifest.complete = True
    manifest.write(out)


def _embed_texts(run, tower, texts: list[str], opts: TextEmbedOptions, bar) -> np.ndarray:
    """(n,) texts -> (n, D) features, in length-sorted batches (little padding), back in order. A text
    that repeats (a caption two images share) is embedded once and its row copied."""
    row_of: dict[str, int] = {}
    inverse = np.array([row_of.setdefault(t, len(row_of)) for t in texts], np.int64)  # (n,) -> unique row
    unique = list(row_of)
    repeats = np.bincount(inverse, minlength=len(unique))  # (u,) texts each unique row stands for
    tok = tower.tokenizer(unique)  # (u, T) padded to the longest text
    ids, mask = tok["input_ids"].long(), tok["attention_mask"].long()
    lengths = mask.sum(1)
    order = torch.argsort(lengths, stable=True)
    out = np.empty((len(unique), tower.embed_dim), np.float32)
    for i in range(0, len(unique), opts.batch_size):
        idx = order[i:i + opts.batch_size]
        L = int(lengths[idx].max())  # right padding: the first L positions hold every token
        out[idx.numpy()] = run(ids[idx, :L].numpy(), mask[idx, :L].numpy())
        if bar is not None:
            bar.update(int(repeats[idx.numpy()].sum()))
    return out[inverse]


def embed_texts(texts: Sequence[str], tower, out: str | Path, opts: TextEmbedOptions | None = None) -> "TextCache":
    """Embed ``texts`` with the locked text ``tower`` into ``out``, resuming finished shards."""
    opts = opts or TextEmbedOptions()
    out, texts = Path(out), list(texts)
    manifest = TextManifest(**tower_identity(tower), dtype=opts.dtype, n_texts=len(texts),
                            texts_sha256=texts_sha256(texts), shard_size=opts.shard_size)
    todo = begin_shards(out, manifest, "by another text tower")
    if todo:
        from ..towers.engine import text_engine

        engine = text_engine(tower, opts.engine, threads=opts.threads or torch.get_num_threads())
        manifest.engine = engine.name
    n_todo = sum(len(texts[k * opts.shard_size:(k + 1) * opts.shard_size]) for k in todo)
    bar = tqdm(total=n_todo, unit="text", desc=f"embed texts {tower.name}", disable=not opts.progress,
               dynamic_ncols=True)
    for k in todo:
        shard = texts[k * opts.shard_size:(k + 1) * opts.shard_size]
        feats = _embed_texts(engine, tower, shard, opts, bar).astype(opts.dtype)
        save_atomic(_shard_path(out, k), lambda p: save_npy(p, feats))
    bar.close()
    finish_shards(out, manifest, [int(np.load(_shard_path(out, k), mmap_mode="r").shape[0])
                                  for k in range(manifest.n_shards)])
    return TextCache(out)


class TextCache:
    """A finished text cache: rows by index as float32, memory-mapped."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.manifest = m = open_finished(self.folder, "text embedding")
        self._shards = [np.load(_shard_path(self.folder, k), mmap_mode="r") for k in range(m.n_shards)]
        counts = [len(s) for s in self._shards]
        self._starts = np.cumsum([0] + counts)

    def __len__(self) -> int:
        return self.manifest.n_texts

    def rows(self, index: np.ndarray | Sequence[int]) -> torch.Tensor:
        """(len(index), D) float32."""
        index = np.asarray(index, dtype=np.int64)
        out = np.empty((len(index), self.manifest.embed_dim), np.float32)
        shard_of = np.searchsorted(self._starts, index, side="right") - 1
        for s in np.unique(shard_of):
            sel = np.nonzero(shard_of == s)[0]
            out[sel] = self._shards[s][index[sel] - self._starts[s]]
        return torch.from_numpy(out)

    def all(self) -> torch.Tensor:
        return self.rows(np.arange(len(self)))

    def check(self, tower, texts: Sequence[str] | None = None) -> None:
        """Refuse the cache unless ``tower`` made it (and, given ``texts``, made it for these texts)."""
        refuse_unless_made_by(self.folder, self.manifest, tower_identity(tower),
                              "by another text tower, tokenizer or context length", texts)


def ensure_text_cache(texts: Sequence[str], tower, out: str | Path, opts: TextEmbedOptions | None = None) -> TextCache:
    """The text cache at ``out`` if it is complete and made by ``tower`` for ``texts``; else embed it."""
    try:
        cache = TextCache(out)
    except (FileNotFoundError, CacheMismatch):
        cache = None
    if cache is None:
        cache = embed_texts(texts, tower, out, opts)
    cache.check(tower, texts)
    return cache


def text_cache_dir(image_cache: str | Path, tower) -> Path:
    """Where the text cache of an image cache's captions lives: inside it, one folder per tower (and per
    precision: an fp32 cache keeps the folder it had before precisions were recorded)."""
    ident = tower_identity(tower)
    if ident["precision"] == "fp32":
        del ident["precision"]
    digest = hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:10]
    slug = "".join(c if c.isalnum() else "_" for c in tower.name)
    return Path(image_cache) / "text" / f"{slug}-{digest}"


__all__ = ["TextEmbedOptions", "TextManifest", "TextCache", "check_text_cache", "embed_texts", "ensure_text_cache",
           "text_cache_dir", "texts_sha256"]
