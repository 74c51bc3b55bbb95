"""Flickr8k: grouped views on a tiny folder made here, and split sizes on the real data."""

from __future__ import annotations

from pathlib import Path

import pytest

from littune.data import Flickr8k

CAPTIONS = """image,caption
a.jpg,"A dog, running ."
a.jpg,"A ""happy"" dog ."
b.jpg,A cat .
b.jpg,
b.jpg,A cat sleeping .
c.jpg,A bird .
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    (tmp_path / "images").mkdir()
    (tmp_path / "splits").mkdir()
    (tmp_path / "captions.csv").write_text(CAPTIONS, encoding="utf-8")
    (tmp_path / "splits" / "train.txt").write_text("c.jpg\na.jpg\n")
    (tmp_path / "splits" / "test.txt").write_text("b.jpg\n")
    return tmp_path


def test_grouped_views(tiny: Path) -> None:
    train = Flickr8k(tiny, "train")
    assert train.image_names() == ["c.jpg", "a.jpg"]  # split order, not file order
    assert train.images() == [str(tiny / "images" / "c.jpg"), str(tiny / "images" / "a.jpg")]
    assert train.captions() == ["A bird .", "A dog, running .", 'A "happy" dog .']
    assert train.caption_to_image() == [0, 1, 1]
    assert train.image_to_captions() == [[0], [1, 2]]
    records = list(train)
    assert [r.key for r in records] == ["c.jpg#0", "a.jpg#0", "a.jpg#1"]
    assert [r.meta["image_index"] for r in records] == [0, 1, 1]
    assert len(train) == 3


def test_bad_caption_recorded(tiny: Path) -> None:
    test = Flickr8k(tiny, "test")
    assert test.captions() == ["A cat .", "A cat sleeping ."]
    assert [r.key for r in test] == ["b.jpg#0", "b.jpg#1"]
    assert [(i.key, i.reason) for i in test.bad] == [("captions.csv:5", "empty caption")]


def test_all_split(tiny: Path) -> None:
    assert Flickr8k(tiny, "all").image_names() == ["a.jpg", "b.jpg", "c.jpg"]


def test_errors(tiny: Path) -> None:
    with pytest.raises(ValueError, match="split must be one of"):
        Flickr8k(tiny, "val")
    with pytest.raises(FileNotFoundError, match="dev.txt"):
        Flickr8k(tiny, "dev")
    (tiny / "splits" / "dev.txt").write_text("a.jpg\nz.jpg\n")
    with pytest.raises(ValueError, match=r"dev\.txt line 2: image 'z\.jpg'"):
        Flickr8k(tiny, "dev")
    with pytest.raises(FileNotFoundError, match="captions.csv"):
        Flickr8k(tiny / "images")


@pytest.fixture(scope="module")
def real(flickr8k_root: Path) -> dict[str, Flickr8k]:
    """Each real split, read once for all the tests below."""
    return {split: Flickr8k(flickr8k_root, split) for split in ("train", "dev", "test", "all")}


@pytest.mark.data
@pytest.mark.parametrize("split, n_images", [("train", 6000), ("dev", 1000), ("test", 1000), ("all", 8091)])
def test_real_split_sizes(real: dict[str, Flickr8k], split: str, n_images: int) -> None:
    data = real[split]
    images, captions, c2i = data.images(), data.captions(), data.caption_to_image()
    assert len(images) == n_images and len(set(images)) == n_images
    assert len(captions) == len(c2i) == len(data) == 5 * n_images
    assert len(data.bad) == 0
    i2c = data.image_to_captions()
    assert all(len(group) == 5 for group in i2c)
    assert all(c2i[c] == i for i, group in enumerate(i2c) for c in group)
    assert Path(images[0]).is_file() and Path(images[-1]).is_file()


@pytest.mark.data
def test_real_splits_are_disjoint(real: dict[str, Flickr8k]) -> None:
    names = {split: set(real[split].image_names()) for split in ("train", "dev", "test")}
    assert not (names["train"] & names["dev"] or names["train"] & names["test"] or names["dev"] & names["test"])
    records = list(real["test"])
    assert len({r.key for r in records}) == 5000
    assert any("," in r.caption for r in records) or any('"' in r.caption for r in records)
