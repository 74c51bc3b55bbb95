"""Archive conversion for Flickr8k and TF-flowers, on tiny archives made here (no network)."""

from __future__ import annotations

import csv
import io
import tarfile
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from littune.data import Flickr8k, list_labelled_images
from littune.data import download
from littune.data.download import convert_flickr8k, convert_flowers

IMAGES = ["1000_a.jpg", "2000_b.jpg", "3000_c.jpg"]


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture
def flickr_zips(tmp_path: Path) -> Path:
    folder = tmp_path / "zips"
    folder.mkdir()
    with zipfile.ZipFile(folder / "Flickr8k_Dataset.zip", "w") as archive:
        for name in IMAGES:  # the real archive nests images in a misspelt folder
            archive.writestr(f"Flicker8k_Dataset/{name}", jpeg())
        archive.writestr("__MACOSX/Flicker8k_Dataset/._1000_a.jpg", b"junk")
    tokens = [
        "1000_a.jpg#1\tA dog , with a \"ball\" .",
        "1000_a.jpg#0\tA dog .",
        "2000_b.jpg#0\tA cat .",
        "3000_c.jpg#0\tA bird .",
        "9999_gone.jpg.1#0\tAn image that is not in the archive .",
    ]
    write_text_zip(folder, tokens)
    return folder


def write_text_zip(folder: Path, tokens: list[str]) -> None:
    with zipfile.ZipFile(folder / "Flickr8k_text.zip", "w") as archive:
        archive.writestr("Flickr8k_text/Flickr8k.token.txt", "\n".join(tokens) + "\n")
        archive.writestr("Flickr_8k.trainImages.txt", "1000_a.jpg\n2000_b.jpg\n")
        archive.writestr("Flickr_8k.devImages.txt", "3000_c.jpg\n")
        archive.writestr("Flickr_8k.testImages.txt", "3000_c.jpg\n")


def test_convert_flickr8k(flickr_zips: Path, tmp_path: Path) -> None:
    target = convert_flickr8k(flickr_zips, tmp_path / "data")
    assert target == tmp_path / "data" / "flickr8k"
    assert sorted(p.name for p in (target / "images").iterdir()) == IMAGES
    with (target / "captions.csv").open(newline="") as stream:
        rows = list(csv.reader(stream))
    assert rows == [
        ["image", "caption"],
        ["1000_a.jpg", "A dog ."],  # ordered by #n
        ["1000_a.jpg", 'A dog , with a "ball" .'],
        ["2000_b.jpg", "A cat ."],
        ["3000_c.jpg", "A bird ."],
    ]
    train = Flickr8k(target, "train")
    assert train.image_names() == ["1000_a.jpg", "2000_b.jpg"] and train.caption_to_image() == [0, 0, 1]
    assert not (tmp_path / "data" / "flickr8k.tmp").exists()


def test_convert_flickr8k_is_idempotent(flickr_zips: Path, tmp_path: Path) -> None:
    target = convert_flickr8k(flickr_zips, tmp_path / "data")
    (target / "captions.csv").write_text("image,caption\nmarker.jpg,kept\n")
    convert_flickr8k(flickr_zips, tmp_path / "data")  # finished layout: left alone
    assert "marker" in (target / "captions.csv").read_text()


def test_convert_flickr8k_rejects_bad_token_line(flickr_zips: Path, tmp_path: Path) -> None:
    write_text_zip(flickr_zips, ["1000_a.jpg#0\tfine", "no tab here"])
    with pytest.raises(ValueError, match="Flickr8k.token.txt line 2"):
        convert_flickr8k(flickr_zips, tmp_path / "data")
    assert not (tmp_path / "data" / "flickr8k").exists()  # nothing half-done looks finished


@pytest.fixture
def flowers_tgz(tmp_path: Path) -> Path:
    path = tmp_path / "flower_photos.tgz"
    data = jpeg()
    with tarfile.open(path, "w:gz") as archive:
        members = [f"flower_photos/daisy/{i}.jpg" for i in range(5)]
        members += [f"flower_photos/tulips/{i}.jpg" for i in range(4)]
        members += ["flower_photos/LICENSE.txt", "../escape.jpg"]
        for name in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_convert_flowers_split(flowers_tgz: Path, tmp_path: Path) -> None:
    target = convert_flowers(flowers_tgz, tmp_path / "a", test_per_class=2, seed=0)
    train, train_labels, classes = list_labelled_images(target / "train")
    test, test_labels, test_classes = list_labelled_images(target / "test")
    assert classes == test_classes == ["daisy", "tulips"]
    assert [train_labels.count(i) for i in range(2)] == [3, 2]
    assert [test_labels.count(i) for i in range(2)] == [2, 2]
    names = lambda paths: sorted(Path(p).relative_to(Path(p).parents[1]).as_posix() for p in paths)  # noqa: E731
    assert not set(names(train)) & set(names(test))
    assert not (tmp_path / "escape.jpg").exists()
    # Deterministic: the same seed gives the same test set, another seed (almost surely) not.
    again = convert_flowers(flowers_tgz, tmp_path / "b", test_per_class=2, seed=0)
    assert names(list_labelled_images(again / "test")[0]) == names(test)
    others = [names(list_labelled_images(convert_flowers(flowers_tgz, tmp_path / f"s{s}", 2, seed=s) / "test")[0])
              for s in range(1, 6)]
    assert any(other != names(test) for other in others)


def test_convert_flowers_too_few_images(flowers_tgz: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tulips.*4 images"):
        convert_flowers(flowers_tgz, tmp_path, test_per_class=4)


def test_download_skips_existing_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(download.urllib.request, "urlopen", no_network)
    for split in ("train", "dev", "test"):
        (tmp_path / "flickr8k" / "splits").mkdir(parents=True, exist_ok=True)
        (tmp_path / "flickr8k" / "splits" / f"{split}.txt").write_text("")
    (tmp_path / "flickr8k" / "images").mkdir()
    (tmp_path / "flickr8k" / "captions.csv").write_text("image,caption\n")
    (tmp_path / "flowers" / "train").mkdir(parents=True)
    (tmp_path / "flowers" / "test").mkdir()
    assert download.ensure_data(tmp_path) == tmp_path
    existing = tmp_path / "file.bin"
    existing.write_bytes(b"done")
    assert download.fetch("https://example.invalid/file.bin", existing) == existing


def test_fetch_via_part_file(tmp_path: Path) -> None:
    # A file:// URL exercises the download loop without any network.
    source = tmp_path / "remote.bin"
    source.write_bytes(bytes(range(256)) * 100)
    target = tmp_path / "out" / "local.bin"
    target.parent.mkdir()
    (target.parent / "local.bin.part").write_bytes(b"stale partial")  # no Range support: restart
    assert download.fetch(source.as_uri(), target) == target
    assert target.read_bytes() == source.read_bytes()
    assert not (target.parent / "local.bin.part").exists()
    with pytest.raises(RuntimeError, match="missing.bin"):
        download.fetch((tmp_path / "missing.bin").as_uri(), tmp_path / "x.bin")
