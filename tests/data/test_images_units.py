"""Exact, fast checks of littune.data.images: error messages, the decode-memory estimate, reduced
decoding per mode, high-depth scaling and the bad-input report (read back as well as written).

Every input is made here in memory or in tmp_path; the whole file runs in about a second.
"""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import struct
import tracemalloc
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from littune.data import images
from littune.data.images import (BadImage, BadInputLog, decode_bytes, load_image, read_image_bytes,
                                 regular_file_problem)


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def refusal(source, **kwargs) -> BadImage:
    with pytest.raises(BadImage) as info:
        load_image(source, **kwargs)
    return info.value


def grey_values(image: Image.Image) -> list[list[int]]:
    """The first channel of an RGB result, row by row (high-depth input comes back grey)."""
    assert image.mode == "RGB"
    return np.asarray(image)[:, :, 0].tolist()


class Reservations:
    """A ``reserve`` that records what each decode asked for."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def __call__(self, nbytes: int):
        self.asked.append(nbytes)
        return nullcontext()


# ------------------------------------------------------------------ messages


def test_bad_image_message_is_name_reason_and_detail_in_brackets() -> None:
    e = BadImage("truncated", "shard-1/0007.jpg", "OSError: image file is truncated")
    assert (e.reason, e.name, e.detail) == ("truncated", "shard-1/0007.jpg", "OSError: image file is truncated")
    assert str(e) == "shard-1/0007.jpg: truncated (OSError: image file is truncated)"
    assert str(BadImage("missing", "a.jpg")) == "a.jpg: missing"  # no detail: no brackets


def test_regular_file_problem_names_what_the_path_is() -> None:
    assert regular_file_problem(stat.S_IFREG | 0o644) == ""
    assert regular_file_problem(stat.S_IFDIR | 0o755) == "a directory"
    assert regular_file_problem(stat.S_IFIFO | 0o644) == "a FIFO"
    assert regular_file_problem(stat.S_IFSOCK | 0o755) == "a socket"
    assert regular_file_problem(stat.S_IFCHR | 0o666) == "a character device"
    assert regular_file_problem(stat.S_IFBLK | 0o660) == "a block device"
    # lstat of a symlink: none of the kinds above, still not something to read
    assert regular_file_problem(stat.S_IFLNK | 0o777) == "not a regular file"


def test_errors_from_bytes_are_labelled_bytes_or_the_given_name() -> None:
    e = refusal(b"")
    assert (e.name, str(e)) == ("<bytes>", "<bytes>: empty file")
    assert str(refusal(b"<html>404</html>")) == "<bytes>: not an image"
    assert str(refusal(b"<html>404</html>", name="shard-2/0001")) == "shard-2/0001: not an image"
    png = encode(Image.new("RGB", (64, 48)))
    e = refusal(png, max_pixels=64 * 48 - 1, name="big")
    assert (e.reason, e.name, e.detail) == ("decompression bomb", "big", "64x48 > max_pixels=3071")
    assert str(e) == "big: decompression bomb (64x48 > max_pixels=3071)"
    e = refusal(png[: len(png) // 2], name="cut")
    assert (e.reason, e.name) == ("truncated", "cut") and str(e).startswith("cut: truncated (")


def test_errors_from_a_path_are_labelled_with_the_path_or_the_given_name(tmp_path: Path) -> None:
    page = tmp_path / "page.jpg"
    page.write_text("<html>404</html>")
    assert str(refusal(page)) == f"{page}: not an image"
    assert str(refusal(page, name="row 3")) == "row 3: not an image"
    missing = tmp_path / "gone.jpg"
    assert str(refusal(missing)) == f"{missing}: missing"
    assert str(refusal(missing, name="row 4")) == "row 4: missing"
    e = refusal(tmp_path, name="row 5")
    assert (e.reason, e.name, e.detail) == ("not a regular file", "row 5", "a directory")
    assert str(e) == "row 5: not a regular file (a directory)"
    photo = tmp_path / "photo.png"
    photo.write_bytes(encode(Image.new("RGB", (8, 8))))
    n = photo.stat().st_size
    e = refusal(photo, max_bytes=n - 1, name="row 6")
    assert str(e) == f"row 6: file too large ({n} bytes > max_bytes={n - 1})" and e.name == "row 6"
    assert read_image_bytes(photo, max_bytes=n) == photo.read_bytes()  # exactly at the limit: read whole
    with pytest.raises(BadImage) as info:
        read_image_bytes(missing, name="row 7")
    assert str(info.value) == "row 7: missing"


def test_a_path_that_cannot_be_looked_up_is_unreadable_with_the_os_error(tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"x")
    inside = photo / "a.jpg"  # a file used as a folder: NotADirectoryError from stat
    e = refusal(inside)
    assert (e.reason, e.name) == ("unreadable", str(inside))
    assert e.detail == f"NotADirectoryError: [Errno 20] Not a directory: '{inside}'"
    assert str(refusal(inside, name="row 8")) == f"row 8: unreadable ({e.detail})"


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="needs Linux /proc")
def test_a_read_error_is_unreadable_with_the_os_error() -> None:
    # /proc/self/mem is a regular file whose first page cannot be read: EIO, as from a failing disk.
    e = refusal("/proc/self/mem", name="disk")
    assert (e.reason, e.name, e.detail) == ("unreadable", "disk", "OSError: [Errno 5] Input/output error")
    assert str(e) == "disk: unreadable (OSError: [Errno 5] Input/output error)"
    assert refusal("/proc/self/mem").name == "/proc/self/mem"


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_a_file_longer_than_its_size_says_is_cut_at_max_bytes() -> None:
    """/proc files report size 0 and hold more: the read itself is bounded."""
    e = refusal("/proc/self/status", max_bytes=100)
    assert (e.reason, e.name, e.detail) == ("file too large", "/proc/self/status", "more than max_bytes=100 bytes")
    assert str(refusal("/proc/self/status", max_bytes=100, name="st")) == \
        "st: file too large (more than max_bytes=100 bytes)"
    size = len(Path("/proc/self/status").read_bytes())
    assert refusal("/proc/self/status", max_bytes=size + 100).reason == "not an image"  # read whole, then judged


@pytest.mark.skipif(not os.path.exists("/proc/kallsyms"), reason="needs Linux /proc")
def test_a_long_file_with_no_size_is_not_read_into_memory() -> None:
    if len(Path("/proc/kallsyms").read_bytes()) < 4 << 20:
        pytest.skip("/proc/kallsyms is short here")
    tracemalloc.start()
    try:
        assert refusal("/proc/kallsyms", max_bytes=1000).reason == "file too large"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak  # the file holds several MB


class Hung(Exception):
    pass


@contextmanager
def deadline(seconds: float):
    def hung(*_):
        raise Hung(f"still blocked after {seconds} s")

    old = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_a_fifo_swapped_in_after_the_check_is_refused_without_blocking(tmp_path: Path, monkeypatch) -> None:
    """The path is a photo when stat looks and a FIFO when it is opened: opening must not wait for a
    writer, and the opened file is checked again."""
    path = tmp_path / "photo.png"
    path.write_bytes(encode(Image.new("RGB", (8, 8))))
    real_stat = os.stat

    def stat_then_swap(p, *args, **kwargs):
        result = real_stat(p, *args, **kwargs)
        if Path(p) == path and not stat.S_ISFIFO(result.st_mode):
            path.unlink()
            os.mkfifo(path)
        return result

    monkeypatch.setattr(os, "stat", stat_then_swap)
    with deadline(5):
        e = refusal(path, name="row 9")
    assert (e.reason, e.name, e.detail) == ("not a regular file", "row 9", "a FIFO")
    assert str(e) == "row 9: not a regular file (a FIFO)"


# ------------------------------------------------------------------ decode memory


def exif_rotated(image: Image.Image, fmt: str = "PNG", orientation: int = 6) -> Image.Image:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return Image.open(io.BytesIO(encode(image, fmt, exif=exif.tobytes())))


@pytest.mark.parametrize("mode, nbytes", [
    ("RGB", 20 * 10 * 4),           # decoded as is
    ("L", 20 * 10 * (1 + 4)),       # + the RGB result
    ("1", 20 * 10 * (1 + 4)),
    ("P", 20 * 10 * (1 + 4)),
    ("CMYK", 20 * 10 * (4 + 4)),
    ("YCbCr", 20 * 10 * (4 + 4)),
    ("LA", 20 * 10 * (2 + 16)),     # + RGBA copy, white background, composite
    ("PA", 20 * 10 * (2 + 16)),
    ("La", 20 * 10 * (2 + 2 + 16)),  # premultiplied: an LA copy first
    ("RGBA", 20 * 10 * (4 + 16)),
    ("RGBa", 20 * 10 * (4 + 16)),
    ("I;16", 20 * 10 * (2 + 5)),    # + 8-bit grey and the RGB result
    ("I;16B", 20 * 10 * (2 + 5)),
    ("I", 20 * 10 * (4 + 5)),
    ("F", 20 * 10 * (4 + 5)),
])
def test_decode_bytes_per_mode(mode: str, nbytes: int) -> None:
    assert decode_bytes(Image.new(mode, (20, 10))) == nbytes


def test_decode_bytes_counts_a_colour_key_as_alpha_and_a_rotation_as_a_copy() -> None:
    keyed = Image.open(io.BytesIO(encode(Image.new("P", (20, 10)), transparency=0)))
    assert decode_bytes(keyed) == 20 * 10 * (1 + 16)
    assert decode_bytes(exif_rotated(Image.new("RGB", (20, 10)))) == 20 * 10 * (4 + 0 + 4)
    assert decode_bytes(exif_rotated(Image.new("L", (20, 10)))) == 20 * 10 * (1 + 4 + 1)
    assert decode_bytes(exif_rotated(Image.new("RGB", (20, 10)), orientation=1)) == 20 * 10 * 4  # upright
    assert decode_bytes(exif_rotated(Image.new("RGB", (20, 10)), "JPEG")) == 20 * 10 * 8


def test_decode_bytes_assumes_a_rotation_when_the_exif_block_is_damaged() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    damaged = exif.tobytes().replace(b"MM\x00*", b"M\xdd\x00*")  # not a TIFF header
    image = Image.open(io.BytesIO(encode(Image.new("RGB", (20, 10)), exif=damaged)))
    assert decode_bytes(image) == 20 * 10 * 8
    reserve = Reservations()
    assert load_image(encode(Image.new("RGB", (20, 10), (9, 9, 9)), exif=damaged), reserve=reserve).getpixel(
        (0, 0)) == (9, 9, 9)
    assert reserve.asked == [20 * 10 * 8]


def test_decode_bytes_with_reduction_counts_the_expanded_copy() -> None:
    # shorter side 10: reduce_to 5 reduces by 2 (exactly at the boundary), 6 does not reduce
    assert decode_bytes(Image.new("RGB", (20, 10)), reduce_to=5) == 20 * 10 * (4 + 4)
    assert decode_bytes(Image.new("RGB", (20, 10)), reduce_to=6) == 20 * 10 * 4
    assert decode_bytes(Image.new("RGBA", (20, 10)), reduce_to=5) == 20 * 10 * (4 + 8)
    assert decode_bytes(Image.new("L", (20, 10)), reduce_to=5) == 20 * 10 * (1 + 4)
    assert decode_bytes(Image.new("I;16", (20, 10)), reduce_to=3) == 20 * 10 * (2 + 4)
    assert decode_bytes(exif_rotated(Image.new("RGB", (20, 10))), reduce_to=5) == 20 * 10 * (4 + 4 + 4)


def test_load_image_reserves_the_decode_bytes_of_the_image_it_decodes() -> None:
    reserve = Reservations()
    assert load_image(encode(Image.new("RGB", (64, 48))), reserve=reserve).size == (64, 48)
    assert load_image(encode(Image.new("RGB", (64, 48))), reserve=reserve, reduce_to=16).size == (22, 16)  # 64 / 3 rounded up
    assert reserve.asked == [64 * 48 * 4, 64 * 48 * 8]


def noise_jpeg(width: int, height: int) -> bytes:
    rng = np.random.default_rng(0)
    return encode(Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)), "JPEG")


@pytest.mark.parametrize("width, height, reduce_to, size", [
    (400, 400, 100, (100, 100)),   # JPEG decoded at 1/4
    (200, 200, 100, (100, 100)),   # exactly twice reduce_to: 1/2
    (250, 250, 100, (125, 125)),   # 1/2 (1/4 would go below reduce_to)
    (800, 400, 100, (200, 100)),   # by the shorter side
    (8, 64, 1, (1, 8)),            # 1/8, the most libjpeg does
    (64, 8, 1, (8, 1)),
    (199, 199, 100, (199, 199)),   # under twice reduce_to: full size
])
def test_jpeg_is_decoded_at_reduced_size(width, height, reduce_to, size) -> None:
    """The JPEG is decoded small (draft mode): the reservation is for the small image, RGB as is."""
    reserve = Reservations()
    out = load_image(noise_jpeg(width, height), reduce_to=reduce_to, reserve=reserve)
    assert out.size == size and out.mode == "RGB"
    assert reserve.asked == [size[0] * size[1] * 4]


# ------------------------------------------------------------------ reduced decoding per mode


def blocks(mode: str, left, right, size=(4, 2)) -> Image.Image:
    """Two 2x2 blocks: ``left`` and ``right``."""
    image = Image.new(mode, size, left)
    for xy in ((2, 0), (3, 0), (2, 1), (3, 1)):
        image.putpixel(xy, right)
    return image


def reduced(data: bytes) -> list:
    out = load_image(data, reduce_to=1)
    assert out.size == (2, 1)  # reduced by 2, every mode below
    return [tuple(p) for p in np.asarray(out).reshape(-1, 3).tolist()]


def test_reduce_by_exactly_two_and_not_below_the_target() -> None:
    grey = encode(Image.new("L", (8, 6), 90))
    assert load_image(grey, reduce_to=3).size == (4, 3)   # 6 // 3 == 2
    assert load_image(grey, reduce_to=4).size == (8, 6)   # 6 // 4 == 1: full size
    assert load_image(grey, reduce_to=2).size == (3, 2)   # 6 // 2 == 3


def test_reduced_pixels_per_mode() -> None:
    palette = [255, 0, 0, 0, 0, 255] + [0] * 762  # index 0 red, 1 blue
    p = blocks("P", 0, 1)
    p.putpalette(palette)
    p.putpixel((2, 0), 0)  # right block: 1 red, 3 blue
    assert reduced(encode(p)) == [(255, 0, 0), (64, 0, 191)]
    # a palette with a transparent index: transparent red is white, not red
    keyed = blocks("P", 0, 1)
    keyed.putpalette(palette)
    assert reduced(encode(keyed, transparency=0)) == [(255, 255, 255), (0, 0, 255)]
    pa = blocks("PA", (0, 0), (1, 255))
    pa.putpalette(palette)
    assert reduced(encode(pa, "TIFF")) == [(255, 255, 255), (0, 0, 255)]
    assert reduced(encode(blocks("1", 1, 0))) == [(255, 255, 255), (0, 0, 0)]
    assert reduced(encode(blocks("L", 10, 200))) == [(10, 10, 10), (200, 200, 200)]
    assert reduced(encode(blocks("LA", (0, 0), (40, 255)))) == [(255, 255, 255), (40, 40, 40)]
    assert reduced(encode(blocks("RGBA", (255, 0, 0, 0), (1, 2, 3, 255)))) == [(255, 255, 255), (1, 2, 3)]
    assert reduced(encode(blocks("CMYK", (0, 0, 0, 0), (0, 255, 255, 0)), "TIFF")) == [(255, 255, 255), (255, 0, 0)]
    assert reduced(encode(blocks("F", 0.2, 1.0), "TIFF")) == [(51, 51, 51), (255, 255, 255)]
    assert reduced(encode(blocks("I;16", 0, 65535), "TIFF")) == [(0, 0, 0), (255, 255, 255)]


# ------------------------------------------------------------------ full-size conversions


def test_palette_and_premultiplied_alpha_are_composited_on_white() -> None:
    pa = blocks("PA", (0, 0), (1, 255))
    pa.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    out = load_image(encode(pa, "TIFF"))
    assert out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((3, 1)) == (0, 0, 255)
    # grey with associated (premultiplied) alpha: TIFF ExtraSamples=1, which PIL opens as "La"
    la = encode(blocks("LA", (0, 0), (0, 255)), "TIFF")
    entry = b"\x52\x01\x03\x00\x01\x00\x00\x00"  # tag 338 ExtraSamples, SHORT, count 1
    assert la.count(entry + b"\x02\x00") == 1
    la = la.replace(entry + b"\x02\x00", entry + b"\x01\x00")
    assert Image.open(io.BytesIO(la)).mode == "La"
    out = load_image(la)
    assert out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((3, 1)) == (0, 0, 0)
    assert reduced(la) == [(255, 255, 255), (0, 0, 0)]


def psd_grey(composite: bytes, layers: list[bytes], width: int = 2, height: int = 2) -> bytes:
    """A greyscale 8-bit Photoshop file: the composite's pixels, then one raw layer per entry."""
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 1, height, width, 8, 1)
    records, pixels = b"", b""
    for layer in layers:
        records += struct.pack(">iiiiHHI", 0, 0, height, width, 1, 0, 2 + len(layer))  # one grey channel
        records += b"8BIMnorm" + bytes([255, 0, 0, 0]) + struct.pack(">I", 0)
        pixels += struct.pack(">H", 0) + layer
    info = struct.pack(">h", len(layers)) + records + pixels
    info += b"\0" * (len(info) % 2)
    section = struct.pack(">I", len(info)) + info
    return header + struct.pack(">II", 0, 0) + struct.pack(">I", len(section)) + section + b"\0\0" + composite


def test_a_layered_photoshop_file_decodes_its_composite() -> None:
    """PIL numbers a PSD's layers from 1 (0 is not a frame): the composite is what opens, and a
    file with several layers is not refused for it."""
    for layers in ([bytes([1, 2, 3, 4])], [bytes([1, 2, 3, 4]), bytes([5, 6, 7, 8])]):
        data = psd_grey(bytes([10, 20, 30, 40]), layers)
        assert Image.open(io.BytesIO(data)).n_frames == len(layers)
        assert grey_values(load_image(data)) == [[10, 20], [30, 40]]


def test_a_mode_pil_cannot_convert_is_unreadable_naming_the_mode(monkeypatch) -> None:
    """Pillow before 11 has no LAB -> RGB conversion: a CIELab TIFF must be a BadImage, not a crash."""
    data = encode(Image.new("LAB", (4, 4), (50, 0, 0)), "TIFF")
    convert = Image.Image.convert

    def old_convert(self, mode=None, *args, **kwargs):
        if self.mode == "LAB" and mode == "RGB":
            raise ValueError("conversion from LAB to RGB not supported")
        return convert(self, mode, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "convert", old_convert)
    e = refusal(data, name="lab.tif")
    assert (e.reason, e.name, e.detail) == ("unreadable", "lab.tif", "unsupported mode LAB")
    assert str(e) == "lab.tif: unreadable (unsupported mode LAB)"


def tiff(values, mode: str | None = None) -> bytes:
    return encode(Image.fromarray(np.asarray(values), mode=mode) if mode else Image.fromarray(np.asarray(values)),
                  "TIFF")


def test_16_bit_is_divided_by_257_whatever_range_it_uses() -> None:
    # a dark 16-bit image stays dark: not stretched to its own min..max
    assert grey_values(load_image(tiff(np.array([[0, 25700]], np.uint16)))) == [[0, 100]]
    assert grey_values(load_image(tiff(np.array([[12850, 25700]], np.uint16)))) == [[50, 100]]


def test_32_bit_integer_in_the_16_bit_range_is_divided_by_257() -> None:
    def grey(values):
        data = tiff(np.array([values], np.int32))
        assert Image.open(io.BytesIO(data)).mode == "I"
        return grey_values(load_image(data))[0]

    assert grey([0, 25700]) == [0, 100]           # lo exactly 0
    assert grey([25700, 65535]) == [100, 255]     # hi exactly 65535
    assert grey([25700, 65536]) == [0, 255]       # one over: stretched min..max
    assert grey([-1, 0, 1, 2]) == [0, 85, 170, 255]  # below 0: stretched min..max, rounded
    assert grey([-2, 0, 1]) == [0, 170, 255]
    assert grey([-5, -5, -5]) == [0, 0, 0]         # one value: no division by zero


def test_float_in_0_1_is_scaled_by_255_else_stretched() -> None:
    def grey(values):
        return grey_values(load_image(tiff(np.array([values], np.float32))))[0]

    assert grey([0.2, 0.4, 0.6]) == [51, 102, 153]
    assert grey([0.0, 0.4]) == [0, 102]           # lo exactly 0
    assert grey([0.2, 1.0]) == [51, 255]          # hi exactly 1
    assert grey([0.2, 2.0]) == [0, 255]           # over 1: stretched
    assert grey([-1.0, 0.0, 1.0]) == [0, 128, 255]


def test_every_row_block_of_a_wide_high_depth_image_is_converted() -> None:
    """1024 columns: rows go 1024 at a time; all 3000 rows must come out, not just the first block."""
    rows = (np.arange(3000) % 251).astype(np.uint16) * 257
    values = np.repeat(rows[:, None], 1024, axis=1)
    values[:, 0] = 65535  # fixes the range at 0..65535
    values[0, 0] = 0
    out = np.asarray(load_image(tiff(values)))[:, 1:, 0]
    assert out.shape == (3000, 1023)
    assert (out == (np.arange(3000) % 251)[:, None]).all()


# ------------------------------------------------------------------ the report


def test_report_round_trips_through_tsv(tmp_path: Path) -> None:
    log = BadInputLog()
    log.add("k1", "a/1.jpg", "missing")
    log.add("k2", "b/2.jpg", "truncated", "line one\r\nline\ttwo\rthree")
    log.add_error("k3", "c/3.jpg", BadImage("empty file", "c/3.jpg"))
    assert [item.detail for item in log] == ["", "line one\r\nline\ttwo\rthree", "c/3.jpg: empty file"]
    path = log.write(tmp_path / "deep" / "er" / "bad.tsv")  # missing parents are made
    assert path == tmp_path / "deep" / "er" / "bad.tsv"
    text = path.read_bytes().decode("utf-8")
    assert text.startswith("key\tpath\treason\tdetail\nk1\ta/1.jpg\tmissing\t\n")  # \n line ends, no \r
    back = BadInputLog.read(path)
    assert list(back) == list(log)
    assert [(i.key, i.path, i.reason, i.detail) for i in back][2] == ("k3", "c/3.jpg", "empty file",
                                                                      "c/3.jpg: empty file")


def test_report_read_of_a_missing_file_is_empty_and_a_detail_column_is_optional(tmp_path: Path) -> None:
    assert len(BadInputLog.read(tmp_path / "none.tsv")) == 0
    old = tmp_path / "old.tsv"
    old.write_text("key\tpath\treason\nk\tp.jpg\tmissing\n", encoding="utf-8")
    assert [(i.key, i.path, i.reason, i.detail) for i in BadInputLog.read(str(old))] == [
        ("k", "p.jpg", "missing", "")]


def test_report_keeps_non_ascii_and_escapes_undecodable_keys(tmp_path: Path) -> None:
    log = BadInputLog()
    log.add("café", "ü.jpg", "missing", "naïve")
    log.add(b"caf\xe9".decode("utf-8", "surrogateescape"), "x.jpg", "missing")  # a key from a Latin-1 file
    tsv = log.write(tmp_path / "bad.tsv")
    assert tsv.read_bytes().decode("utf-8").splitlines()[1:] == [
        "café\tü.jpg\tmissing\tnaïve", "caf\\udce9\tx.jpg\tmissing\t"]
    assert [i.key for i in BadInputLog.read(tsv)] == ["café", "caf\\udce9"]
    jsonl = log.write(tmp_path / "bad.jsonl")
    lines = jsonl.read_bytes().decode("utf-8").splitlines()
    assert lines[0] == '{"key": "café", "path": "ü.jpg", "reason": "missing", "detail": "naïve"}'
    assert '"key": "caf\\udce9"' in lines[1] and json.loads(lines[1])["key"] == "caf\udce9"  # JSON escape


def test_report_is_utf_8_whatever_the_locale(tmp_path: Path) -> None:
    """Under the C locale (ASCII, no UTF-8 coercion) the report is still written and read as UTF-8."""
    import subprocess
    import sys

    code = ("import sys\nfrom littune.data.images import BadInputLog\n"
            "log = BadInputLog()\nlog.add('caf\\u00e9', '\\u00fc.jpg', 'missing')\n"
            "path = log.write(sys.argv[1])\n"
            "print(ascii([(i.key, i.path) for i in BadInputLog.read(path)]))")
    env = {**os.environ, "LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "bad.tsv")], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[('caf\\xe9', '\\xfc.jpg')]"
    assert (tmp_path / "bad.tsv").read_bytes().splitlines()[1] == "café\tü.jpg\tmissing\t".encode("utf-8")
