"""Broken inputs never stop `littune embed`: good (and convertible) images are embedded, the rest listed."""
from __future__ import annotations

import csv as csvlib
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from littune.cache import EmbedOptions, EmbeddingCache, embed
from littune.cli import main

from .tiny_data import TOWER, make_images


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (a decompression bomb's signature)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


GREY = np.tile(np.linspace(0, 255, 48).round().astype(np.uint8), (48, 1))  # a horizontal ramp

# file name -> reason it must be reported with
BAD_FILES = {"missing.jpg": "missing", "empty.jpg": "empty file", "truncated.jpg": "truncated",
             "html.jpg": "not an image", "bomb.png": "decompression bomb"}
CONVERTED = ["cmyk.jpg", "grey.png", "grey_alpha.png", "rgba.png", "grey16.png", "palette.png"]
N_GOOD = 10


@pytest.fixture(scope="module")
def messy(tmp_path_factory) -> Path:
    """A CSV mixing good images, convertible modes, broken files and malformed rows."""
    root = tmp_path_factory.mktemp("messy")
    img = root / "images"
    good = make_images(img, N_GOOD)
    Image.new("CMYK", (48, 48), (0, 200, 200, 0)).save(img / "cmyk.jpg", quality=95)
    Image.fromarray(GREY, "L").save(img / "grey.png")
    Image.fromarray(np.stack([GREY, np.full_like(GREY, 255)], -1), "LA").save(img / "grey_alpha.png")
    rgba = np.zeros((48, 48, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, 24:, 3] = 255  # left half transparent: composited on white
    Image.fromarray(rgba, "RGBA").save(img / "rgba.png")
    Image.fromarray(GREY.astype(np.uint16) * 257).save(img / "grey16.png")  # I;16, full 16-bit range
    assert Image.open(img / "grey16.png").mode.startswith("I")
    Image.fromarray(GREY, "L").convert("P").save(img / "palette.png")
    (img / "empty.jpg").write_bytes(b"")
    whole = (img / good[0][0]).read_bytes()
    (img / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (img / "html.jpg").write_text("<html><body>404 Not Found</body></html>")
    (img / "bomb.png").write_bytes(_png_header_only(100_000, 100_000))

    rows = [f"images/{name},{cap}" for name, cap in good[:5]]
    rows += [f"images/{name},a {name.split('.')[0]} picture" for name in CONVERTED]
    rows += [f"images/{name},a broken {name}" for name in BAD_FILES]
    rows += [f"images/{name},{cap}" for name, cap in good[5:]]
    text = "image,caption\n" + "\n".join(rows[:8]) + "\nimages/img_000.jpg\n" + "\n".join(rows[8:]) + "\n"
    data = text.encode() + "images/img_001.jpg,caf".encode() + b"\xe9 au lait\n"  # Latin-1, not UTF-8
    (root / "data.csv").write_bytes(data)
    return root / "data.csv"


def _read_bad(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csvlib.DictReader(f, delimiter="\t"))


def _check_messy_cache(out: Path, csv: Path) -> None:
    cache = EmbeddingCache(out)
    m = cache.manifest
    assert m.complete
    n_files = N_GOOD + len(CONVERTED) + len(BAD_FILES)
    assert (m.n_items, m.count, m.n_bad) == (n_files, N_GOOD + len(CONVERTED), len(BAD_FILES) + 2)
    keys = cache.keys
    assert sorted(keys) == sorted([f"images/img_{i:03d}.jpg" for i in range(N_GOOD)]
                                  + [f"images/{n}" for n in CONVERTED])
    assert torch.isfinite(cache.all()).all()

    bad = _read_bad(out / "bad_inputs.tsv")
    assert len(bad) == m.n_bad
    assert list(bad[0]) == ["key", "path", "reason", "detail"]
    by_key = {row["key"]: row for row in bad}
    for name, reason in BAD_FILES.items():
        row = by_key[f"images/{name}"]
        assert row["reason"] == reason, (name, row)
        assert Path(row["path"]) == csv.parent / "images" / name
    rows = {row["reason"]: row for row in bad if row["key"].startswith("data.csv:")}
    assert set(rows) == {"missing caption field", "non-UTF-8 caption"}
    assert rows["missing caption field"]["path"] == "images/img_000.jpg"

    # Converted, not clipped: 16-bit grey and grey+alpha give the 8-bit grey image's embedding.
    emb = dict(zip(keys, cache.all()))
    for name in ("grey16.png", "grey_alpha.png", "palette.png"):
        torch.testing.assert_close(emb[f"images/{name}"], emb["images/grey.png"], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(emb["images/rgba.png"], emb["images/cmyk.jpg"], atol=1e-3)


def test_embed_skips_and_lists_bad_inputs(tmp_path, messy, tower):
    out = tmp_path / "cache"
    m = embed(str(messy), tower, out, EmbedOptions(shard_size=8, batch_size=8, num_workers=0, progress=False,
                                                   dtype="float32"))
    assert m.complete
    _check_messy_cache(out, messy)


def test_max_pixels_option(tmp_path, tower):
    folder = tmp_path / "data"
    rows = make_images(folder, 6)  # 48 x 48
    Image.new("RGB", (30, 30), (10, 200, 10)).save(folder / "small.jpg")
    (tmp_path / "data.csv").write_text("image,caption\n" + "".join(f"data/{n},{c}\n" for n, c in rows)
                                       + "data/small.jpg,a small green square\n")
    m = embed(str(tmp_path / "data.csv"), tower, tmp_path / "cache",
              EmbedOptions(shard_size=4, num_workers=0, progress=False, max_pixels=40 * 40))
    assert (m.count, m.n_bad) == (1, 6)
    assert EmbeddingCache(tmp_path / "cache").keys == ["data/small.jpg"]
    assert {r["reason"] for r in _read_bad(tmp_path / "cache" / "bad_inputs.tsv")} == {"decompression bomb"}


def _cli(data: str, out: Path, weights: Path) -> list[str]:
    return ["embed", "--data", data, "--out", str(out), "--tower", TOWER, "--checkpoint", str(weights),
            "--shard-size", "8", "--batch-size", "8", "--workers", "0", "--dtype", "float32", "--no-progress"]


def test_cli_embed_with_bad_inputs(tmp_path, messy, tower_weights, capsys):
    out = tmp_path / "cache"
    assert main(_cli(str(messy), out, tower_weights) + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)  # --json: the JSON alone
    assert report["out"] == str(out)
    assert (report["count"], report["n_bad"], report["n_items"]) == (N_GOOD + len(CONVERTED), 7, 21)
    assert report["tower"] == TOWER
    _check_messy_cache(out, messy)
    # Without --json: one line a person reads, naming the count and where the bad inputs are listed.
    assert main(_cli(str(messy), out, tower_weights)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"embedded {report['count']} of 21 images ({report['n_captions']} captions) with {TOWER} "
                     f"into {out}; skipped 7 bad inputs, listed in {out}/bad_inputs.tsv"]


@pytest.mark.parametrize("case", ["missing", "empty", "header_only", "no_image_column"])
def test_cli_embed_unusable_source_exits_2(tmp_path, tower_weights, capsys, case):
    data = tmp_path / "data.csv"
    if case == "empty":
        data.write_bytes(b"")
    elif case == "header_only":
        data.write_text("image,caption\n")
    elif case == "no_image_column":
        data.write_text("picture,caption\na.jpg,a cat\n")
    assert main(_cli(str(data), tmp_path / "cache", tower_weights)) == 2
    err = capsys.readouterr().err
    assert str(data) in err and "error" in err
    assert not (tmp_path / "cache" / "manifest.json").exists()
