"""``DecodeDataset`` item by item: the plain view first and then the augmented ones, views seeded by the
global image index (seed * 1_000_003 + offset + i, so shards, workers and resumption give the same
views), the bytes hashed being the bytes decoded, the pixel limit passed on, and names in errors."""
from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
import torch
from PIL import Image

from littune.data.decode import DecodeDataset, collate_hashed

RGB = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 13  # (H, W, 3)


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, "RGB").save(buf, format="PNG")
    return buf.getvalue()


def plain(im) -> torch.Tensor:
    return torch.from_numpy(np.asarray(im).astype(np.float32)).permute(2, 0, 1)  # (3, H, W)


def noisy(im) -> torch.Tensor:
    return plain(im) + torch.rand(3, im.height, im.width)  # an augmentation that draws from torch's RNG


def expected_views(image: np.ndarray, seed: int, views: int) -> torch.Tensor:
    base = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)
    torch.manual_seed(seed)
    return torch.stack([base] + [base + torch.rand(base.shape) for _ in range(views)])


def test_views_need_a_view_transform():
    with pytest.raises(ValueError, match=r"^views > 0 needs a view_transform$"):
        DecodeDataset([_png(RGB)], transform=plain, views=2)
    assert len(DecodeDataset([_png(RGB)] * 3, transform=plain, view_transform=noisy, views=2)) == 3


def test_plain_item_has_no_digest_and_no_views():
    i, x, digest = DecodeDataset([b"x", _png(RGB)], transform=plain)[1]
    assert (i, digest) == (1, "")
    assert x.shape == (1, 3, 2, 3) and torch.equal(x[0], plain(Image.fromarray(RGB)))


def test_views_follow_the_plain_view_seeded_by_the_global_index():
    images = [_png(RGB), _png(RGB[::-1].copy()), _png(RGB[:, ::-1].copy())]
    ds = DecodeDataset(images, transform=plain, view_transform=noisy, views=2, seed=1, offset=7)
    i, x, _ = ds[2]
    assert i == 2 and x.shape == (3, 3, 2, 3)
    torch.testing.assert_close(x, expected_views(RGB[:, ::-1], 1 * 1_000_003 + 7 + 2, 2), rtol=0, atol=0)
    # Defaults: seed 0, offset 0.
    torch.testing.assert_close(DecodeDataset(images, transform=plain, view_transform=noisy, views=1)[1][1],
                               expected_views(RGB[::-1], 1, 1), rtol=0, atol=0)
    # A shard that starts at image 1 gives image 2 the same views as the whole set does.
    whole = DecodeDataset(images, transform=plain, view_transform=noisy, views=2, seed=3)
    shard = DecodeDataset(images[1:], transform=plain, view_transform=noisy, views=2, seed=3, offset=1)
    assert torch.equal(whole[2][1], shard[1][1])
    # Another seed, other views (the plain view stays).
    other = DecodeDataset(images, transform=plain, view_transform=noisy, views=2, seed=4)[2][1]
    assert torch.equal(other[0], whole[2][1][0]) and not torch.equal(other[1:], whole[2][1][1:])


def test_hashes_are_of_the_bytes_decoded_from_bytes_and_from_paths(tmp_path):
    data = _png(RGB)
    path = tmp_path / "a.png"
    path.write_bytes(data)
    ds = DecodeDataset([data, str(path), bytearray(data)], transform=plain, hashes=True)
    expected = (hashlib.sha256(data).hexdigest(), len(data))
    items = [ds[i] for i in range(3)]
    assert [d for _, _, d in items] == [expected] * 3
    kept, pixels, bad, digests = collate_hashed(items)
    assert kept == [0, 1, 2] and bad == [] and digests == [expected] * 3
    assert torch.equal(pixels[1], pixels[0])


def test_bad_images_are_named_and_reasoned(tmp_path):
    missing = str(tmp_path / "gone.png")
    named = DecodeDataset([missing, b"junk"], names=["cat", "dog"], transform=plain, hashes=True)
    assert named[0] == (0, None, ("missing", "cat: missing"))  # the name, not the path, read or hashed
    assert named[1] == (1, None, ("not an image", "dog: not an image"))
    unnamed = DecodeDataset([b"junk", missing], transform=plain, hashes=True)
    assert unnamed[0] == (0, None, ("not an image", "<bytes>: not an image"))
    assert unnamed[1][2][1].startswith(f"{missing}: missing")


def test_the_pixel_limit_is_passed_on():
    data = _png(RGB)  # 6 pixels
    assert DecodeDataset([data], transform=plain, max_pixels=6)[0][1] is not None
    i, x, (reason, message) = DecodeDataset([data], names=["big"], transform=plain, max_pixels=5)[0]
    assert (i, x, reason) == (0, None, "decompression bomb") and message.startswith("big: decompression bomb")
