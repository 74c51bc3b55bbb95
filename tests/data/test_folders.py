"""list_labelled_images on folders made here, and on the real flowers data when present."""

from __future__ import annotations

from pathlib import Path

import pytest

from littune.data import list_labelled_images


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")  # contents are not read


def test_sorted_listing_and_labels(tmp_path: Path) -> None:
    for name in ["tulips/b.JPG", "tulips/a.png", "daisy/z.jpeg", "daisy/nested/y.webp", "daisy/notes.txt",
                 "daisy/.hidden.jpg", "daisy/._x.jpg", ".cache/q.jpg", "roses/r.TIFF"]:
        touch(tmp_path / name)
    (tmp_path / "README.md").write_text("not a class")
    paths, labels, classes = list_labelled_images(tmp_path)
    assert classes == ["daisy", "roses", "tulips"]
    rel = [Path(p).relative_to(tmp_path).as_posix() for p in paths]
    assert rel == ["daisy/nested/y.webp", "daisy/z.jpeg", "roses/r.TIFF", "tulips/a.png", "tulips/b.JPG"]
    assert labels == [0, 0, 1, 2, 2]


def test_a_folder_of_split_folders_is_refused_with_the_split_named(tmp_path: Path) -> None:
    # flowers/{train,test}/<class>/: read as classes it would score "train" against "test".
    for name in ["train/daisy/a.jpg", "train/roses/b.jpg", "test/daisy/c.jpg", "test/roses/d.jpg"]:
        touch(tmp_path / "flowers" / name)
    with pytest.raises(ValueError, match=r"sub-folders \(test, train\) look like splits .*\(daisy, roses\).*"
                                         rf"point at one split, e.g. {tmp_path / 'flowers' / 'test'}"):
        list_labelled_images(tmp_path / "flowers")
    assert list_labelled_images(tmp_path / "flowers" / "test")[2] == ["daisy", "roses"]
    # Classes that happen to be called test or train hold images: they are classes.
    for name in ["exam/train/a.jpg", "exam/test/b.jpg"]:
        touch(tmp_path / name)
    assert list_labelled_images(tmp_path / "exam")[2] == ["test", "train"]


def test_errors_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no class folders"):
        list_labelled_images(tmp_path)
    touch(tmp_path / "cats" / "a.txt")
    with pytest.raises(ValueError, match=r"cats: class folder holds no images"):
        list_labelled_images(tmp_path)
    with pytest.raises(ValueError, match="not a directory"):
        list_labelled_images(tmp_path / "missing")


@pytest.mark.data
def test_real_flowers(shared_data: Path) -> None:
    paths, labels, classes = list_labelled_images(shared_data / "flowers" / "test")
    assert classes == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    assert len(paths) == 1000 and [labels.count(i) for i in range(5)] == [200] * 5
