"""Decoding at reduced size: JPEG in draft mode (fewer pixels ever decoded), other formats reduced at once."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from littune.data.images import load_image


def _photo(width: int, height: int) -> Image.Image:
    """A smooth gradient with a diagonal: downscaling it any sensible way gives nearly the same picture."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([255 * x / width, 255 * y / height, 128 + 100 * np.sin((x + y) / 300)], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _decode(data: bytes, reduce_to: int | None) -> tuple[Image.Image, list[int]]:
    reserved = []

    def reserve(nbytes: int):  # images.decode_bytes: bytes, by mode
        reserved.append(nbytes)
        from contextlib import nullcontext
        return nullcontext()
    return load_image(data, reduce_to=reduce_to, reserve=reserve), reserved


def test_jpeg_is_decoded_in_draft_mode_at_the_smallest_scale_that_keeps_reduce_to():
    data = _encoded(_photo(2048, 1536), "JPEG")
    small, reserved = _decode(data, 256)
    # 1536 / 256 = 6: libjpeg's scales are 1/2, 1/4, 1/8, so 1/4: 512 x 384 decoded, never 3 MP.
    assert reserved == [512 * 384 * 4] and small.size == (512, 384) and small.mode == "RGB"
    full, reserved_full = _decode(data, None)
    assert reserved_full == [2048 * 1536 * 4] and full.size == (2048, 1536)
    same = np.asarray(full.resize(small.size, Image.BOX), dtype=np.float32)
    assert np.abs(np.asarray(small, dtype=np.float32) - same).mean() < 2.0  # the same picture


def test_png_is_reduced_right_after_decoding():
    data = _encoded(_photo(1300, 550), "PNG")
    small, reserved = _decode(data, 128)
    assert reserved == [1300 * 550 * 8]  # no draft mode for PNG: all pixels decoded, then a reduced copy
    assert small.size == (325, 138) and min(small.size) >= 128  # 550 // 128 = 4; reduce rounds up
    same = np.asarray(Image.open(io.BytesIO(data)).reduce(4), dtype=np.float32)
    assert np.abs(np.asarray(small, dtype=np.float32) - same).max() <= 1


def test_small_and_palette_images_are_left_as_they_are():
    small, reserved = _decode(_encoded(_photo(600, 400), "JPEG"), 256)
    assert small.size == (600, 400) and reserved == [240_000 * 4]  # JPEG: shorter side below 2 x 256
    palette = _photo(1000, 600).convert("P", palette=Image.ADAPTIVE, colors=16)
    img, _ = _decode(_encoded(palette, "PNG"), 150)
    # A palette is converted to RGB first, then reduced (averaging palette indices would be wrong).
    assert img.mode == "RGB" and img.size == (250, 150)
    ref = np.asarray(palette.convert("RGB").reduce(4), dtype=np.float32)
    assert np.abs(np.asarray(img, dtype=np.float32) - ref).max() <= 1


def _modes():
    base = _photo(800, 480)
    palette = base.convert("P", palette=Image.ADAPTIVE, colors=16)
    palette.info["transparency"] = 3
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(base.size))
    grey16 = Image.fromarray((np.asarray(base.convert("L"), dtype=np.uint16) * 257).astype(np.uint16))
    return {"P+transparency": palette, "RGBA": rgba, "I;16": grey16, "1": base.convert("1"), "LA": rgba.convert("LA")}


@pytest.mark.parametrize("mode", ["P+transparency", "RGBA", "I;16", "1", "LA"])
def test_every_mode_reduced_matches_the_full_decode_reduced(mode):
    data = _encoded(_modes()[mode], "PNG")
    small, _ = _decode(data, 120)
    full = load_image(data)  # 800 x 480, RGB, alpha on white, 16 bits scaled to 8
    assert small.mode == "RGB" and small.size == (200, 120)
    ref = np.asarray(full.resize(small.size, Image.BOX), dtype=np.float32)
    # The same picture; "1" is dithered, so only its averages agree.
    assert np.abs(np.asarray(small, dtype=np.float32) - ref).mean() < (12 if mode == "1" else 1.5), mode


def test_what_reserve_raises_reaches_the_caller_unchanged():
    class Full(Exception):
        pass

    def reserve(nbytes: int):
        raise Full(nbytes)

    data = _encoded(_photo(64, 48), "PNG")
    with pytest.raises(Full) as e:  # not turned into BadImage("unreadable"): the image is fine, the server busy
        load_image(data, reduce_to=32, reserve=reserve)
    assert e.value.args == (64 * 48 * 4,)


@pytest.mark.parametrize("mode, size, reduce_to, per_pixel", [
    ("RGB", (600, 400), 256, 4),  # decoded only
    ("RGB", (2000, 1200), 256, 8),  # and a reduced copy
    ("I;16", (150, 4000), 256, 2 + 5),  # elongated: no reduction; 8-bit grey in blocks, then RGB
    ("F", (300, 300), 256, 4 + 5),
    ("RGBA", (300, 300), 256, 4 + 16),  # alpha composited on white at full size
    ("LA", (1200, 1200), 256, 2 + 8),  # reduced first
    ("P", (300, 300), None, 1 + 4),
])
def test_decode_bytes_charges_each_mode_what_its_path_takes(mode, size, reduce_to, per_pixel):
    from littune.data.images import decode_bytes

    image = Image.open(io.BytesIO(_encoded(Image.new(mode, size), "TIFF" if mode == "F" else "PNG")))
    assert decode_bytes(image, reduce_to) == size[0] * size[1] * per_pixel
