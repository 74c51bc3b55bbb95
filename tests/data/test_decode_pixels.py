"""Image decoding checked pixel by pixel: what goes in as RGB, grey, palette or 16-bit comes out as
the exact 8-bit RGB it stands for (not BGR, not clipped, not a shifted palette), from bytes, from a
path, at reduced size and through ``DecodeDataset``."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from littune.data.decode import DecodeDataset, collate_decoded
from littune.data.images import load_image

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (9, 13, 3), dtype=np.uint8)  # (H, W, 3): every channel different
GREY = RNG.integers(0, 256, (9, 13), dtype=np.uint8)
DEEP = RNG.integers(0, 65536, (9, 13)).astype(np.uint16)


def _encode(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _pixels(data, **kw) -> np.ndarray:
    out = load_image(data, **kw)
    assert out.mode == "RGB"
    return np.asarray(out)


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "PPM"])
def test_plain_rgb_comes_back_exactly_in_rgb_order(fmt):
    assert (_pixels(_encode(Image.fromarray(RGB, "RGB"), fmt)) == RGB).all()


def test_rgb_from_a_path_equals_from_bytes(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(_encode(Image.fromarray(RGB, "RGB")))
    assert (_pixels(str(path)) == RGB).all() and (_pixels(path) == RGB).all()


def test_rgb_jpeg_keeps_channel_order():
    # Lossy, so not exact: pure red, green and blue blocks stay in their channel.
    blocks = np.zeros((16, 48, 3), np.uint8)
    for c in range(3):
        blocks[:, 16 * c:16 * (c + 1), c] = 255
    out = _pixels(_encode(Image.fromarray(blocks, "RGB"), "JPEG", quality=95, subsampling=0)).astype(int)
    for c in range(3):
        inner = (slice(4, 12), slice(16 * c + 4, 16 * c + 12))
        assert np.abs(out[inner] - blocks[inner]).max() < 40, c


def test_grey_becomes_three_equal_channels():
    out = _pixels(_encode(Image.fromarray(GREY, "L")))
    assert out.shape == (9, 13, 3) and all((out[..., c] == GREY).all() for c in range(3))


def test_palette_pixels_are_their_palette_colours():
    palette = RNG.integers(0, 256, (16, 3), dtype=np.uint8)
    index = RNG.integers(0, 16, (9, 13), dtype=np.uint8)
    image = Image.fromarray(index, "P")
    image.putpalette(palette.flatten().tolist())
    for fmt in ("PNG", "GIF", "BMP"):
        assert (_pixels(_encode(image, fmt)) == palette[index]).all(), fmt


def test_palette_with_a_transparent_index_is_white_there_and_exact_elsewhere():
    palette = RNG.integers(0, 256, (8, 3), dtype=np.uint8)
    index = RNG.integers(0, 8, (9, 13), dtype=np.uint8)
    image = Image.fromarray(index, "P")
    image.putpalette(palette.flatten().tolist())
    expected = palette[index].copy()
    expected[index == 5] = 255
    assert (_pixels(_encode(image, transparency=5)) == expected).all()


def test_16_bit_grey_is_scaled_by_257_and_rounded():
    values = DEEP.copy()
    values[0, :6] = [0, 65535, 257, 32768, 128, 129]  # 0, 255, 1, 127.5 -> 128, 0.498 -> 0, 0.502 -> 1
    out = _pixels(_encode(Image.fromarray(values)))
    expected = np.rint(values / 257.0).astype(np.uint8)
    assert out[0, :6, 0].tolist() == [0, 255, 1, 128, 0, 1]
    assert all((out[..., c] == expected).all() for c in range(3))


def test_rgba_and_la_alpha_composited_on_white_per_pixel():
    alpha = RNG.integers(0, 256, (9, 13), dtype=np.uint8)
    rgba = np.dstack([RGB, alpha])
    a = alpha[..., None] / 255.0
    expected = RGB * a + 255 * (1 - a)
    out = _pixels(_encode(Image.fromarray(rgba, "RGBA"))).astype(int)
    assert np.abs(out - expected).max() <= 1  # alpha_composite rounds in 8-bit arithmetic
    assert (out[alpha == 255] == RGB[alpha == 255]).all() and (out[alpha == 0] == 255).all()
    la = _pixels(_encode(Image.fromarray(np.dstack([GREY, alpha]), "LA"))).astype(int)
    assert np.abs(la[..., 0] - (GREY * a[..., 0] + 255 * (1 - a[..., 0]))).max() <= 1


def test_reduced_decode_averages_exact_blocks():
    # 8x8 blocks of one colour, 32x48: reduce_to=8 shrinks by 4 (shorter side 32 -> 8): each block
    # becomes 2x2 output pixels of exactly its colour, in RGB order.
    colours = RNG.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    big = np.repeat(np.repeat(colours, 8, axis=0), 8, axis=1)
    out = _pixels(_encode(Image.fromarray(big, "RGB")), reduce_to=8)
    assert out.shape == (8, 12, 3)
    assert (out == np.repeat(np.repeat(colours, 2, axis=0), 2, axis=1)).all()
    noisy = RNG.integers(0, 256, (16, 24, 3), dtype=np.uint8)  # an average, not one pixel of each block
    means = noisy.reshape(4, 4, 6, 4, 3).mean(axis=(1, 3))
    assert np.abs(_pixels(_encode(Image.fromarray(noisy, "RGB")), reduce_to=4) - means).max() <= 0.5 + 1e-9
    deep = np.repeat(np.repeat((colours[..., 0].astype(np.uint16) * 257), 8, axis=0), 8, axis=1)
    grey = _pixels(_encode(Image.fromarray(deep)), reduce_to=8)[..., 0]
    assert (grey == np.repeat(np.repeat(colours[..., 0], 2, axis=0), 2, axis=1)).all()


def test_decode_dataset_hands_the_transform_the_exact_pixels():
    images = [_encode(Image.fromarray(RGB, "RGB")), _encode(Image.fromarray(GREY, "L")), b"not an image"]
    ds = DecodeDataset(images, names=["rgb", "grey", "bad"],
                       transform=lambda im: torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1))
    kept, pixels, bad = collate_decoded([ds[i] for i in range(3)])
    assert kept == [0, 1] and pixels.shape == (2, 1, 3, 9, 13)
    assert (pixels[0, 0].permute(1, 2, 0).numpy() == RGB).all()
    assert (pixels[1, 0].numpy() == GREY[None]).all()
    assert bad == [(2, ("not an image", "bad: not an image"))]


def test_rgb_with_a_transparent_colour_key_is_white_there_and_exact_elsewhere():
    """A PNG's tRNS colour key on an RGB image means what it means on grey and palette images: the
    keyed colour is transparent, so it is composited on white like them; every other pixel is exact."""
    rgb = RNG.integers(0, 256, (9, 13, 3), dtype=np.uint8)
    key = (10, 200, 30)
    rgb[::3, ::2] = key
    keyed = (rgb == key).all(axis=-1)
    expected = rgb.copy()
    expected[keyed] = 255
    assert keyed.any() and (~keyed).any()
    assert (_pixels(_encode(Image.fromarray(rgb, "RGB"), transparency=key)) == expected).all()
    assert (_pixels(_encode(Image.fromarray(rgb, "RGB"))) == rgb).all()  # no key: untouched
