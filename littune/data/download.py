"""Fetch the public Flickr8k and TF-flowers archives and convert them to littune's layout.

For users with internet access; the tests only exercise the ``convert_*`` functions on tiny
archives they build themselves. The layout written is the one ``Flickr8k`` and
``list_labelled_images`` read::

    DEST/flickr8k/images/*.jpg, captions.csv (image,caption), splits/{train,dev,test}.txt
    DEST/flowers/{train,test}/<class>/*.jpg

Each step is idempotent: a finished archive or data set folder is left alone. Downloads go to a
``.part`` file (resumed with an HTTP Range request when the server allows it) and conversions to a
``.tmp`` folder, each renamed into place only when complete, so an interrupted run never leaves
something that looks finished.
"""

from __future__ import annotations

import csv
import random
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm import tqdm

__all__ = [
    "FLICKR8K_URLS",
    "FLOWERS_URL",
    "fetch",
    "convert_flickr8k",
    "convert_flowers",
    "download_flickr8k",
    "download_flowers",
    "ensure_data",
]

FLICKR8K_URLS = {
    "Flickr8k_Dataset.zip": "https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_Dataset.zip",
    "Flickr8k_text.zip": "https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_text.zip",
}
FLOWERS_URL = "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz"

# Split files inside Flickr8k_text.zip, by littune split name.
FLICKR8K_SPLIT_FILES = {
    "train": "Flickr_8k.trainImages.txt",
    "dev": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}
FLICKR8K_TOKEN_FILE = "Flickr8k.token.txt"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


# --------------------------------------------------------------------------- network


def fetch(url: str, path: str | Path, *, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``path`` (skipped when ``path`` exists) with a progress bar."""
    path = Path(path)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={start}-"} if start else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as response:
            if start and getattr(response, "status", None) != 206:
                start = 0  # the server ignored the Range header: start over
            size = response.headers.get("Content-Length")
            total = start + int(size) if size else None
            with part.open("ab" if start else "wb") as out, tqdm(
                total=total, initial=start, unit="B", unit_scale=True, desc=path.name
            ) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not start:  # 416: the .part file already holds everything
            raise RuntimeError(f"downloading {url} failed: {exc}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise RuntimeError(
            f"downloading {url} failed: {exc}. Rerun to resume, or download it by hand to {path}"
        ) from exc
    part.replace(path)
    return path


def download_flickr8k(dest: str | Path, *, keep_archives: bool = False) -> Path:
    """Download and convert Flickr8k into ``DEST/flickr8k``; returns that folder."""
    dest = Path(dest)
    target = dest / "flickr8k"
    if _flickr8k_complete(target):
        return target
    downloads = dest / "downloads"
    for name, url in FLICKR8K_URLS.items():
        fetch(url, downloads / name)
    convert_flickr8k(downloads, dest)
    if not keep_archives:
        for name in FLICKR8K_URLS:
            (downloads / name).unlink(missing_ok=True)
    return target


def download_flowers(dest: str | Path, test_per_class: int = 200, seed: int = 0, *, keep_archives: bool = False) -> Path:
    """Download TF-flowers and split it into ``DEST/flowers/{train,test}/<class>``."""
    dest = Path(dest)
    target = dest / "flowers"
    if _flowers_complete(target):
        return target
    archive = fetch(FLOWERS_URL, dest / "downloads" / "flower_photos.tgz")
    convert_flowers(archive, dest, test_per_class=test_per_class, seed=seed)
    if not keep_archives:
        archive.unlink(missing_ok=True)
    return target


def ensure_data(data_dir: str | Path) -> Path:
    """Return ``data_dir`` holding ``flickr8k/`` and ``flowers/``, downloading what is missing."""
    data_dir = Path(data_dir)
    download_flickr8k(data_dir)
    download_flowers(data_dir)
    return data_dir


# --------------------------------------------------------------------------- conversion


def _flickr8k_complete(folder: Path) -> bool:
    return (folder / "captions.csv").is_file() and (folder / "images").is_dir() and all(
        (folder / "splits" / f"{split}.txt").is_file() for split in FLICKR8K_SPLIT_FILES
    )


def _flowers_complete(folder: Path) -> bool:
    return (folder / "train").is_dir() and (folder / "test").is_dir()


def _fresh_tmp(target: Path) -> Path:
    """An empty staging folder next to ``target``, renamed onto it when the work is done."""
    tmp = target.with_name(target.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)  # left over from an interrupted run
    tmp.mkdir(parents=True)
    return tmp


def _is_junk(name: str) -> bool:
    """macOS archive droppings: ``__MACOSX/`` folders and ``._file`` resource forks."""
    parts = PurePosixPath(name).parts
    return "__MACOSX" in parts or PurePosixPath(name).name.startswith(".")


def convert_flickr8k(zip_dir: str | Path, dest: str | Path) -> Path:
    """Convert ``Flickr8k_Dataset.zip`` + ``Flickr8k_text.zip`` (in ``zip_dir``) to ``DEST/flickr8k``.

    Captions of images absent from the image archive are dropped (the official token file has a
    few, e.g. ``2258277193_586949ec62.jpg.1``). Returns the data set folder.
    """
    zip_dir, target = Path(zip_dir), Path(dest) / "flickr8k"
    if _flickr8k_complete(target):
        return target
    tmp = _fresh_tmp(target)

    # Images: flattened into images/ by file name (the archive nests them in Flicker8k_Dataset/).
    images = tmp / "images"
    images.mkdir()
    with zipfile.ZipFile(zip_dir / "Flickr8k_Dataset.zip") as archive:
        for info in archive.infolist():
            name = PurePosixPath(info.filename).name
            if info.is_dir() or _is_junk(info.filename) or not name.lower().endswith(_IMAGE_SUFFIXES):
                continue
            with archive.open(info) as src, (images / name).open("wb") as out:
                shutil.copyfileobj(src, out)
    present = {p.name for p in images.iterdir()}
    if not present:
        raise ValueError(f"{zip_dir / 'Flickr8k_Dataset.zip'}: holds no images")

    with zipfile.ZipFile(zip_dir / "Flickr8k_text.zip") as archive:
        texts = {PurePosixPath(n).name: n for n in archive.namelist() if not _is_junk(n)}
        def read(name: str) -> str:
            if name not in texts:
                raise ValueError(f"{zip_dir / 'Flickr8k_text.zip'}: lacks {name}")
            return archive.read(texts[name]).decode("utf-8", errors="replace")

        captions = _parse_token_file(read(FLICKR8K_TOKEN_FILE), present)
        splits = {split: read(file) for split, file in FLICKR8K_SPLIT_FILES.items()}

    with (tmp / "captions.csv").open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["image", "caption"])
        for image, texts_of_image in captions.items():
            writer.writerows([image, caption] for caption in texts_of_image)

    (tmp / "splits").mkdir()
    for split, text in splits.items():
        names = [line.strip() for line in text.splitlines() if line.strip()]
        unknown = [n for n in names if n not in captions]
        if unknown:
            raise ValueError(f"{FLICKR8K_SPLIT_FILES[split]}: {len(unknown)} image(s) without captions, e.g. {unknown[0]}")
        (tmp / "splits" / f"{split}.txt").write_text("".join(n + "\n" for n in names), encoding="utf-8")

    if target.exists():
        shutil.rmtree(target)  # an incomplete older layout
    tmp.replace(target)
    return target


def _parse_token_file(text: str, present: set[str]) -> dict[str, list[str]]:
    """Parse ``IMAGE#n<TAB>caption`` lines into image -> captions ordered by n."""
    numbered: dict[str, list[tuple[int, str]]] = {}
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        ref, tab, caption = line.partition("\t")
        image, hash_, n = ref.rpartition("#")
        if not tab or not hash_ or not n.isdigit():
            raise ValueError(f"{FLICKR8K_TOKEN_FILE} line {line_no}: expected 'IMAGE#n<TAB>caption', got {line[:80]!r}")
        if image in present and caption.strip():
            numbered.setdefault(image, []).append((int(n), caption.strip()))
    return {image: [c for _, c in sorted(items)] for image, items in numbered.items()}


def convert_flowers(tgz_path: str | Path, dest: str | Path, test_per_class: int = 200, seed: int = 0) -> Path:
    """Split ``flower_photos.tgz`` into ``DEST/flowers/{train,test}/<class>``.

    Per class, ``test_per_class`` images chosen by a seeded shuffle of the sorted file names go to
    test, the rest to train, so the split is the same on every machine.
    """
    tgz_path, target = Path(tgz_path), Path(dest) / "flowers"
    if _flowers_complete(target):
        return target
    tmp = _fresh_tmp(target)

    # One pass through the archive: everything lands in train/, then the test picks move over.
    # Members are written by hand (class/file name only) rather than extractall'd, so a hostile
    # archive cannot write outside the target.
    with tarfile.open(tgz_path, "r:*") as archive:
        for member in archive:
            parts = PurePosixPath(member.name).parts
            if not member.isfile() or len(parts) != 3 or _is_junk(member.name):
                continue  # e.g. flower_photos/LICENSE.txt
            _, label, name = parts
            if not name.lower().endswith(_IMAGE_SUFFIXES):
                continue
            folder = tmp / "train" / label
            folder.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            assert source is not None  # regular files always have content
            with source, (folder / name).open("wb") as out:
                shutil.copyfileobj(source, out)

    train = tmp / "train"
    labels = sorted(p.name for p in train.iterdir()) if train.is_dir() else []
    if not labels:
        raise ValueError(f"{tgz_path}: no class folders of images found (expected flower_photos/<class>/*.jpg)")
    for label in labels:
        names = sorted(p.name for p in (train / label).iterdir())
        if len(names) <= test_per_class:
            raise ValueError(f"{tgz_path}: class {label!r} has {len(names)} images, cannot hold out {test_per_class}")
        random.Random(f"{seed}:{label}").shuffle(names)  # str seeds are hashed deterministically
        test_folder = tmp / "test" / label
        test_folder.mkdir(parents=True)
        for name in names[:test_per_class]:
            (train / label / name).replace(test_folder / name)

    if target.exists():
        shutil.rmtree(target)
    tmp.replace(target)
    return target
