"""Safe image decoding with an explicit bad-input policy.

Web-scale image-text data always contains broken files: missing, empty, truncated downloads,
HTML error pages saved as ``.jpg``, decompression bombs. ``load_image`` turns every such case
into a ``BadImage`` exception with a short machine-friendly ``reason``, so a data pipeline can
skip the item and record it in a ``BadInputLog`` instead of crashing or training on garbage.
Reads are bounded: only a regular file is read (a FIFO would block forever, ``/dev/zero`` never
ends; both are refused from ``stat`` before opening), and one larger than ``max_bytes`` is refused
before any of it is read.

What a successful ``load_image`` returns is always a fully decoded 8-bit RGB ``PIL.Image``:
EXIF orientation applied, first frame of animations, alpha composited on white, 16-bit greyscale
scaled (not clipped) to 8 bits.

With ``reduce_to`` (a server decoding uploads), the image is decoded no larger than needed: JPEG
in libjpeg's draft mode (DCT scaling by 1/2, 1/4 or 1/8, Pillow's ``Image.draft``), other formats
reduced by an integer factor right after decoding; the shorter side stays >= ``reduce_to``.
``reserve(nbytes)`` is entered around the decode with ``decode_bytes``: the most memory decoding and
converting this image takes, by its mode and bit depth (16-bit, float, alpha, palette, rotation), so a
caller can bound the bytes being decoded at once.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from collections import Counter
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["BadImage", "BadInput", "BadInputLog", "load_image", "decode_bytes", "read_image_bytes",
           "regular_file_problem",
           "DEFAULT_MAX_PIXELS", "DEFAULT_MAX_BYTES"]

# Same default as PIL's own ``Image.MAX_IMAGE_PIXELS`` (about 9.5k x 9.5k).
DEFAULT_MAX_PIXELS = 89_478_485
# Bytes read from one image file at most: above any image within the pixel limit (an uncompressed
# RGBA bitmap of 89.5 Mpx is 358 MB), so only files that could never be used are refused.
DEFAULT_MAX_BYTES = 512 * 2**20

# Reasons used by ``BadImage``; kept as constants so callers can compare without typos.
MISSING = "missing"
EMPTY = "empty file"
TRUNCATED = "truncated"
NOT_AN_IMAGE = "not an image"
BOMB = "decompression bomb"
UNREADABLE = "unreadable"
NOT_REGULAR = "not a regular file"
TOO_LARGE = "file too large"


class BadImage(Exception):
    """An image that cannot be used. ``reason`` is a short tag such as "truncated"."""

    def __init__(self, reason: str, name: str, detail: str = "") -> None:
        self.reason = reason
        self.name = name
        self.detail = detail
        message = f"{name}: {reason}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)


def load_image(
    source: str | Path | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str | None = None,
    reduce_to: int | None = None,
    reserve: Callable[[int], AbstractContextManager] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Image.Image:
    """Decode ``source`` (a file path or encoded bytes) into a fully loaded RGB image.

    Raises ``BadImage`` for anything unusable; never returns a half-decoded image.
    ``name`` is used in error messages (defaults to the path, or "<bytes>"); a path must be a
    regular file of at most ``max_bytes``.
    ``reduce_to``: decode at reduced size, shorter side >= this (see the module docstring).
    ``reserve``: called with ``decode_bytes`` of the image about to be decoded; decoding runs inside it.
    """
    label, data = (name or "<bytes>", bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else \
        (name or str(source), read_image_bytes(source, name=name, max_bytes=max_bytes))
    if not data:
        raise BadImage(EMPTY, label)

    with _as_bad_image(label):
        image = _open(data, max_pixels, label, reduce_to)
    # Outside the translation: what `reserve` raises (a busy server) is the caller's, not a bad image.
    with (reserve or _no_reserve)(decode_bytes(image, reduce_to)), _as_bad_image(label):
        image.load()
        if reduce_to is not None:  # inside `reserve`: the full-size buffers are freed before it ends
            image = _shrink(image, reduce_to)
        return _to_rgb(image, label)


@contextmanager
def _as_bad_image(label: str) -> Iterator[None]:
    """Whatever PIL raises while opening or decoding becomes a ``BadImage`` with a reason."""
    try:
        yield
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # PIL's own global limit (or warnings-as-errors) tripped before ours could.
        raise BadImage(BOMB, label, str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise BadImage(NOT_AN_IMAGE, label) from exc
    except Exception as exc:
        # PIL reports truncation as OSError ("image file is truncated", "Truncated File Read").
        # Broken files make PIL's plugins raise almost anything (OSError, SyntaxError,
        # struct.error, IndexError, ...), so everything else is lumped into "unreadable".
        reason = TRUNCATED if "truncated" in str(exc).lower() else UNREADABLE
        raise BadImage(reason, label, f"{type(exc).__name__}: {exc}") from exc


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def regular_file_problem(mode: int) -> str:
    """"" for a regular file's ``st_mode``, else what it is ("a FIFO", "a directory", ...)."""
    if stat.S_ISREG(mode):
        return ""
    return next((what for test, what in _KINDS if test(mode)), "not a regular file")


def read_image_bytes(path: str | Path, *, name: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The encoded bytes of an image file, with ``load_image``'s checks (``BadImage`` if unusable):
    a caller that also hashes them (the cache's content fingerprint) reads the file once."""
    return _read_file(Path(path), name or str(path), max_bytes)


def _read_file(path: Path, label: str, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Read the whole file, if it is a regular one of at most ``max_bytes`` (``stat`` says so before
    it is opened: opening a FIFO waits for a writer, a device may never end); decoding from memory
    means no file handle outlives the call."""
    try:
        kind = regular_file_problem(os.stat(path).st_mode)  # follows symlinks: a link to a photo is fine
        if kind:
            raise BadImage(NOT_REGULAR, label, kind)
        # O_NONBLOCK: should a FIFO be swapped in after the stat, opening it still returns at once
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError as exc:
        raise BadImage(MISSING, label) from exc
    except OSError as exc:  # permission denied, I/O error...
        raise BadImage(UNREADABLE, label, f"{type(exc).__name__}: {exc}") from exc
    with open(fd, "rb") as f:
        st = os.fstat(f.fileno())
        kind = regular_file_problem(st.st_mode)
        if kind:
            raise BadImage(NOT_REGULAR, label, kind)
        if st.st_size > max_bytes:
            raise BadImage(TOO_LARGE, label, f"{st.st_size} bytes > max_bytes={max_bytes}")
        try:
            data = f.read(max_bytes + 1)  # bounded even if the file grows while it is read
        except OSError as exc:
            raise BadImage(UNREADABLE, label, f"{type(exc).__name__}: {exc}") from exc
    if len(data) > max_bytes:
        raise BadImage(TOO_LARGE, label, f"more than max_bytes={max_bytes} bytes")
    return data


def _open(data: bytes, max_pixels: int, label: str, reduce_to: int | None) -> Image.Image:
    """Open, check the header's size against ``max_pixels``, set the JPEG draft size.

    The caller's ``.load()`` decodes everything; with LOAD_TRUNCATED_IMAGES left False (we never
    touch it) a truncated file raises there instead of returning grey padding. An opened image is
    at its first frame (a PSD at its composite: PIL numbers its layers from 1, so ``seek(0)`` would
    refuse a layered one); asking for ``n_frames`` would make PIL walk every frame, so it is not asked.
    """
    image = Image.open(io.BytesIO(data))
    # Image.open only parses the header: reject bombs before allocating their pixels.
    width, height = image.size
    if width * height > max_pixels:
        raise BadImage(BOMB, label, f"{width}x{height} > max_pixels={max_pixels}")
    if reduce_to is not None and min(width, height) >= 2 * reduce_to:
        s = reduce_to / min(width, height)
        image.draft(None, (max(1, int(width * s)), max(1, int(height * s))))  # JPEG only; others ignore it
    return image


# Bytes per pixel PIL holds each mode in (every other mode: 4, as RGB is stored).
_SOURCE_BPP = {"1": 1, "L": 1, "P": 1, "LA": 2, "La": 2, "PA": 2, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")


def decode_bytes(image: Image.Image, reduce_to: int | None = None) -> int:
    """The most memory ``load_image`` takes for ``image`` (opened, not yet decoded), in bytes.

    The decoded pixels at their mode's size, plus what the path to 8-bit RGB adds at full size:
    nothing for RGB; a rotated copy when EXIF says to rotate; with ``reduce_to`` and a factor of 2
    or more, the expanded copy ``_shrink`` reduces (4 bytes a pixel, 8 with alpha); otherwise the
    RGB result (4) plus, for 16-bit and float, the 8-bit grey made row block by row block (1), and for
    alpha, the RGBA copy, the white background and the composite (12; premultiplied La also an LA copy, 2).
    The JPEG draft size is already in ``image.size``.
    """
    w, h = image.size
    src = _SOURCE_BPP.get(image.mode, 4)
    alpha = image.mode in _ALPHA or "transparency" in image.info
    try:
        rotated = image.getexif().get(0x0112, 1) not in (1, None)
    except Exception:  # noqa: BLE001 - a damaged EXIF block: assume the copy
        rotated = True
    if reduce_to is not None and min(w, h) // reduce_to >= 2:
        extra = 8 if alpha else 4
    elif image.mode == "RGB":
        extra = 0
    elif image.mode.startswith("I") or image.mode == "F":
        extra = 1 + 4
    elif alpha:
        extra = 4 + 12 + (2 if image.mode == "La" else 0)  # La goes through an LA copy first
    else:
        extra = 4
    return w * h * (src + extra + (src if rotated else 0))


def _no_reserve(_: int) -> AbstractContextManager:
    return nullcontext()


def _shrink(image: Image.Image, reduce_to: int) -> Image.Image:
    """Box-average by the largest integer factor that keeps the shorter side >= ``reduce_to``.

    Palette and 1-bit images are expanded first (palette indices cannot be averaged), 16-bit ones
    widened to 32-bit; peak memory is at most about 9 bytes per pixel (a palette with transparency),
    8 for RGBA (``reduce`` works on a premultiplied copy), 4 for RGB.
    """
    factor = min(image.size) // reduce_to
    if factor < 2:
        return image
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA" if image.mode == "PA" or "transparency" in image.info else "RGB")
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode == "La":  # premultiplied grey: PIL converts it only to LA
        image = image.convert("LA")
    elif image.mode.startswith("I;16"):
        image = image.convert("I")  # values kept; _high_depth_to_rgb scales I like I;16
    if image.mode not in ("L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "I", "F"):
        return image  # anything else (LAB, HSV, ...) is left to _to_rgb at full size
    return image.reduce(factor)


def _to_rgb(image: Image.Image, label: str) -> Image.Image:
    """Orientation, then mode conversion to 8-bit RGB."""
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:  # a tRNS colour key is alpha, as for L and P
        return image
    if mode.startswith("I") or mode == "F":
        return _high_depth_to_rgb(image)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        if mode == "La":  # premultiplied grey (a TIFF with associated alpha): PIL converts it only to LA
            image = image.convert("LA")
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    try:
        # Covers 1, L, P, CMYK, YCbCr, HSV.
        return image.convert("RGB")
    except ValueError as exc:  # e.g. LAB has no direct conversion
        raise BadImage(UNREADABLE, label, f"unsupported mode {mode}") from exc


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer or float greyscale to 8 bits by range, never by clipping.

    PIL's own ``convert("L")`` clips I;16 values at 255, which turns most 16-bit photos white.
    """
    import numpy as np  # here, not at the top: the CLI reads this module's names without numpy

    values = np.asarray(image)  # (H, W) at the mode's own depth: no widened copy of the whole image
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if image.mode.startswith("I;16") or (lo >= 0 and hi <= 65535 and image.mode == "I"):
        offset, scale = 0.0, 1 / 257.0  # 65535 -> 255 exactly
    elif image.mode == "F" and lo >= 0 and hi <= 1:
        offset, scale = 0.0, 255.0
    else:  # unknown range: stretch min..max
        offset, scale = lo, (255.0 / (hi - lo) if hi > lo else 0.0)
    grey = np.empty(values.shape, dtype=np.uint8)
    rows = max(1, (1 << 20) // max(1, values.shape[1]))  # ~1 M pixels of float64 at a time: 8 MB, not 8 bytes a pixel
    for top in range(0, values.shape[0], rows):
        block = (values[top:top + rows].astype(np.float64) - offset) * scale
        np.clip(np.rint(block, out=block), 0, 255, out=block)
        grey[top:top + rows] = block
    return Image.fromarray(grey, mode="L").convert("RGB")


@dataclass(frozen=True)
class BadInput:
    """One skipped item: its key, where it came from, why, and a human detail line."""

    key: str
    path: str
    reason: str
    detail: str = ""


class BadInputLog:
    """Collects skipped items and writes a report (TSV, or JSONL by file extension)."""

    def __init__(self) -> None:
        self.items: list[BadInput] = []

    def add(self, key: str, path: str, reason: str, detail: str = "") -> None:
        self.items.append(BadInput(str(key), str(path), reason, detail))

    def add_error(self, key: str, path: str, error: BadImage) -> None:
        """Record a ``BadImage`` raised while loading ``path``."""
        self.add(key, path, error.reason, str(error))

    def counts(self) -> dict[str, int]:
        """Number of skipped items per reason, most frequent first."""
        return dict(Counter(item.reason for item in self.items).most_common())

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    @classmethod
    def read(cls, path: str | Path) -> "BadInputLog":
        """Read a TSV report written by ``write`` (a missing file is an empty log)."""
        log = cls()
        path = Path(path)
        if path.is_file():
            with path.open(encoding="utf-8", newline="") as f:
                for row in csv.DictReader(f, delimiter="\t"):
                    log.add(row["key"], row["path"], row["reason"], row.get("detail") or "")
        return log

    def write(self, path: str | Path) -> Path:
        """Write the report. A directory gets ``bad_inputs.tsv``; ``*.jsonl`` writes JSON lines.

        Returns the file written.
        """
        path = Path(path)
        if path.is_dir():
            path = path / "bad_inputs.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        # backslashreplace: keys read from non-UTF-8 files carry surrogate escapes.
        with path.open("w", encoding="utf-8", errors="backslashreplace", newline="") as out:
            if path.suffix == ".jsonl":
                for item in self.items:
                    out.write(json.dumps(asdict(item), ensure_ascii=False) + "\n")
            else:
                writer = csv.writer(out, delimiter="\t", lineterminator="\n")
                writer.writerow(["key", "path", "reason", "detail"])
                writer.writerows([item.key, item.path, item.reason, item.detail] for item in self.items)
        return path
