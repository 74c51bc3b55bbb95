"""load_image's bad-input policy and mode conversions, on inputs each test makes itself."""

from __future__ import annotations

import io
import json
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from littune.data.images import BadImage, BadInputLog, load_image


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def noise(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` but holds no pixel data: costs nothing to
    make, and decoding it would fail, so a "decompression bomb" verdict proves the size was
    checked before decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def reason_of(source, **kwargs) -> str:
    with pytest.raises(BadImage) as info:
        load_image(source, **kwargs)
    return info.value.reason


# ------------------------------------------------------------------ bad inputs


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jpg"
    with pytest.raises(BadImage) as info:
        load_image(path)
    assert info.value.reason == "missing"
    assert str(path) in str(info.value)  # the message names the file


def test_empty_file_and_empty_bytes(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert reason_of(path) == "empty file"
    assert reason_of(b"") == "empty file"


def test_truncated_jpeg_raises_and_flag_stays_off(tmp_path: Path) -> None:
    data = encode(noise(128, 96), "JPEG", quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    assert reason_of(path) == "truncated"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_png(tmp_path: Path) -> None:
    data = encode(noise(), "PNG")
    assert reason_of(data[: len(data) // 2]) == "truncated"


def test_text_file_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "page.jpg"
    path.write_text("<html><body>404 Not Found</body></html>")
    assert reason_of(path) == "not an image"


def _refusal(path, **kwargs) -> BadImage:
    with pytest.raises(BadImage) as e:
        load_image(path, **kwargs)
    return e.value


def test_only_regular_files_are_read(tmp_path: Path) -> None:
    """A directory, a FIFO (opening it would wait for a writer forever), a socket and a device are
    refused from ``stat`` before they are opened, saying what they are; a link to a photo is read."""
    import os
    import socket

    fifo, sock = tmp_path / "pipe.jpg", tmp_path / "sock.jpg"
    os.mkfifo(fifo)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock))
    try:
        for path, kind in ((tmp_path, "a directory"), (fifo, "a FIFO"), (sock, "a socket"),
                           (Path("/dev/null"), "a character device")):
            e = _refusal(path)
            assert (e.reason, e.detail) == ("not a regular file", kind), path
        (tmp_path / "link.jpg").symlink_to(fifo)  # a link is judged by what it points to
        assert _refusal(tmp_path / "link.jpg").detail == "a FIFO"
    finally:
        server.close()
    photo = tmp_path / "photo.png"
    photo.write_bytes(encode(noise(), "PNG"))
    (tmp_path / "photo_link.png").symlink_to(photo)
    assert load_image(tmp_path / "photo_link.png").size == (64, 48)


def test_a_file_over_the_byte_limit_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    data = encode(noise(), "PNG")
    path.write_bytes(data)
    e = _refusal(path, max_bytes=len(data) - 1)
    assert e.reason == "file too large" and f"{len(data)} bytes > max_bytes={len(data) - 1}" in str(e)
    assert load_image(path, max_bytes=len(data)).size == (64, 48)  # exactly at the limit: fine
    # A sparse 1 GiB file, over the default limit: refused from its size, none of it read.
    huge = tmp_path / "huge.jpg"
    with huge.open("wb") as f:
        f.truncate(1 << 30)
    assert _refusal(huge).reason == "file too large"


def test_dev_zero_is_refused_not_read_until_memory_runs_out(tmp_path: Path) -> None:
    """In a child with 1 GiB of address space: reading /dev/zero whole would never end."""
    import os
    import subprocess
    import sys

    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
            "from littune.data.images import BadImage, load_image\n"
            "try:\n    load_image('/dev/zero')\nexcept BadImage as e:\n    print(e.reason, '|', e.detail)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0 and r.stdout.strip() == "not a regular file | a character device", r.stderr[-2000:]


def test_bomb_from_header_before_decoding() -> None:
    # 20000 x 20000 is beyond twice PIL's own limit: PIL raises inside Image.open.
    assert reason_of(png_header_only(20_000, 20_000)) == "decompression bomb"


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_bomb_between_pil_warning_and_error() -> None:
    # 10000 x 10000 only makes PIL warn; our own header check must reject it.
    assert reason_of(png_header_only(10_000, 10_000)) == "decompression bomb"


def test_bomb_with_warnings_as_errors() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert reason_of(png_header_only(10_000, 10_000)) == "decompression bomb"


def test_bomb_with_low_max_pixels() -> None:
    data = encode(noise(64, 48), "PNG")
    assert reason_of(data, max_pixels=64 * 48 - 1) == "decompression bomb"
    assert load_image(data, max_pixels=64 * 48).size == (64, 48)


def test_bytes_error_uses_name() -> None:
    with pytest.raises(BadImage, match="shard-3/0042"):
        load_image(b"not an image at all", name="shard-3/0042")


# ------------------------------------------------------------------ conversions


def pixel(image: Image.Image, xy=(0, 0)) -> tuple[int, ...]:
    assert image.mode == "RGB"
    return image.getpixel(xy)


def test_rgb_jpeg_from_path_is_fully_loaded(tmp_path: Path) -> None:
    path = tmp_path / "ok.jpg"
    path.write_bytes(encode(noise(), "JPEG"))
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (64, 48)
    path.unlink()  # decoded already: nothing should still read the file
    assert image.tobytes()


def test_cmyk_jpeg() -> None:
    red_in_cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))
    r, g, b = pixel(load_image(encode(red_in_cmyk, "JPEG", quality=95)), (8, 8))
    assert r > 200 and g < 60 and b < 60


def test_greyscale() -> None:
    assert pixel(load_image(encode(Image.new("L", (8, 8), 100), "PNG"))) == (100, 100, 100)


def test_la_transparent_is_white() -> None:
    image = Image.new("LA", (8, 8), (0, 0))
    assert pixel(load_image(encode(image, "PNG"))) == (255, 255, 255)


def test_rgba_composited_on_white() -> None:
    image = Image.new("RGBA", (3, 1))
    image.putpixel((0, 0), (255, 0, 0, 0))  # fully transparent red -> white
    image.putpixel((1, 0), (0, 0, 255, 255))  # opaque blue stays blue
    image.putpixel((2, 0), (0, 0, 0, 128))  # half-transparent black -> mid grey
    out = load_image(encode(image, "PNG"))
    assert pixel(out, (0, 0)) == (255, 255, 255)
    assert pixel(out, (1, 0)) == (0, 0, 255)
    assert all(abs(v - 127) <= 2 for v in pixel(out, (2, 0)))


def test_palette_with_transparency() -> None:
    image = Image.new("P", (4, 4), 0)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    image.putpixel((1, 1), 1)
    out = load_image(encode(image, "PNG", transparency=0))
    assert pixel(out, (0, 0)) == (255, 255, 255)  # transparent index -> white
    assert pixel(out, (1, 1)) == (0, 255, 0)


def test_16_bit_png_is_scaled_not_clipped() -> None:
    values = np.array([[0, 257 * 100, 32896, 65535]], dtype=np.uint16)
    data = encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")  # really a 16-bit file
    out = load_image(data)
    assert [pixel(out, (x, 0))[0] for x in range(4)] == [0, 100, 128, 255]


def test_32_bit_integer_stretched() -> None:
    values = np.array([[-1000, 0, 1000]], dtype=np.int32)
    out = load_image(encode(Image.fromarray(values, mode="I"), "TIFF"))
    assert [pixel(out, (x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_exif_orientation_applied() -> None:
    image = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = load_image(encode(image, "JPEG", exif=exif.tobytes()))
    assert out.size == (20, 40)


def test_animated_gif_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    assert pixel(load_image(data)) == (255, 0, 0)


# ------------------------------------------------------------------ report


def test_bad_input_log_counts_and_reports(tmp_path: Path) -> None:
    log = BadInputLog()
    for key, source in [("a", tmp_path / "missing.jpg"), ("b", b""), ("c", b"")]:
        try:
            load_image(source)
        except BadImage as error:
            log.add_error(key, str(source), error)
    log.add("d", "x.jpg", "empty caption", "rows.csv line 4: empty caption")
    assert log.counts() == {"empty file": 2, "missing": 1, "empty caption": 1}
    assert len(log) == 4

    tsv = log.write(tmp_path)  # a folder gets bad_inputs.tsv
    assert tsv == tmp_path / "bad_inputs.tsv"
    lines = tsv.read_text().splitlines()
    assert lines[0] == "key\tpath\treason\tdetail" and len(lines) == 5
    assert lines[1].split("\t")[:3] == ["a", str(tmp_path / "missing.jpg"), "missing"]

    jsonl = log.write(tmp_path / "out" / "bad.jsonl")
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["key"] for r in rows] == ["a", "b", "c", "d"]
    assert rows[3]["detail"] == "rows.csv line 4: empty caption"
