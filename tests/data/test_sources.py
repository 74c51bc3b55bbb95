"""CSV/TSV, JSONL and WebDataset sources, and open_source's dispatch, on files made here."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from littune.data import Flickr8k, load_image
from littune.data.open import open_source
from littune.data.sources import CsvSource, JsonlSource, Record, WebDatasetSource
from tests.data.shards import write_tar


def reasons(source) -> list[tuple[str, str]]:
    """(key, reason) of every skipped row, in order."""
    return [(item.key, item.reason) for item in source.bad]


# ------------------------------------------------------------------ CSV / TSV


def write_csv(path: Path, rows: list[list[str]], delimiter: str = ",") -> Path:
    with path.open("w", encoding="utf-8", newline="") as out:
        csv.writer(out, delimiter=delimiter).writerows(rows)
    return path


def test_csv_quotes_commas_and_keys(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "pairs.csv",
        [
            ["image", "caption", "source"],
            ["a.jpg", 'A dog says "woof", loudly .', "web"],
            ["a.jpg", "  Second caption of a  ", "web"],
            ["sub/b.jpg", "A caption\nover two lines", "book"],
        ],
    )
    records = list(CsvSource(path))
    assert [r.key for r in records] == ["a.jpg#0", "a.jpg#1", "sub/b.jpg#0"]
    assert records[0].caption == 'A dog says "woof", loudly .'
    assert records[1].caption == "Second caption of a"  # stripped
    assert records[2].caption == "A caption\nover two lines"
    assert records[0].image == str(tmp_path / "a.jpg")  # relative to the CSV's folder
    assert records[2].meta == {"source": "book"}
    assert isinstance(records[0], Record)


def test_csv_root_and_custom_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "pairs.csv", [["file", "text"], ["x.png", "hello"]])
    (record,) = CsvSource(path, image_col="file", caption_col="text", root=tmp_path / "imgs")
    assert record.image == str(tmp_path / "imgs" / "x.png")
    assert record.key == "x.png#0"


def test_csv_bad_rows_are_skipped_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text(
        "image,caption\n"
        "a.jpg,fine\n"  # line 2
        ",no image\n"  # line 3
        "b.jpg,   \n"  # line 4: blank caption
        "c.jpg\n"  # line 5: no caption field at all
        '"d.jpg","multi\nline"\n'  # lines 6-7
        "e.jpg,also fine\n",  # line 8
        encoding="utf-8",
    )
    source = CsvSource(path)
    assert [r.key for r in source] == ["a.jpg#0", "d.jpg#0", "e.jpg#0"]
    assert reasons(source) == [
        ("pairs.csv:3", "missing image field"),
        ("pairs.csv:4", "empty caption"),
        ("pairs.csv:5", "missing caption field"),
    ]
    assert "pairs.csv line 4" in source.bad.items[1].detail
    assert len(source) == 3


def test_csv_non_utf8_row_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_bytes(b"image,caption\na.jpg,caf\xe9 latte\nb.jpg,ok\n\xff.jpg,bad path\n")
    source = CsvSource(path)
    assert [r.caption for r in source] == ["ok"]
    assert reasons(source) == [("pairs.csv:2", "non-UTF-8 caption"), ("pairs.csv:4", "non-UTF-8 image path")]


def test_csv_second_pass_does_not_duplicate_bad_rows(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", [["image", "caption"], ["a.jpg", ""], ["b.jpg", "x"]])
    source = CsvSource(path)
    assert len(list(source)) == len(list(source)) == 1
    assert len(source.bad) == 1


def test_csv_wrong_header(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "pairs.csv", [["filepath", "title"], ["a.jpg", "x"]])
    with pytest.raises(ValueError, match=r"pairs\.csv.*\['caption'\].*'filepath', 'title'"):
        CsvSource(path, image_col="filepath")


def test_csv_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(ValueError, match="empty.csv"):
        CsvSource(path)


def test_tsv_by_extension(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "pairs.tsv", [["image", "caption"], ["a.jpg", "red, green, blue"]], "\t")
    (record,) = CsvSource(path)
    assert record.caption == "red, green, blue"
    # An explicit separator overrides the extension.
    other = write_csv(tmp_path / "pairs.txt", [["image", "caption"], ["a.jpg", "x"]], "|")
    assert [r.caption for r in CsvSource(other, sep="|")] == ["x"]


# ------------------------------------------------------------------ JSONL


def test_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    lines = [
        json.dumps({"image": "a.jpg", "caption": " A cat ", "url": "http://x"}),  # 1
        "{not json",  # 2
        "[1, 2]",  # 3
        json.dumps({"image": "a.jpg"}),  # 4
        "",  # 5: blank, ignored
        json.dumps({"image": "a.jpg", "caption": "A cat again"}),  # 6
        json.dumps({"image": "b.jpg", "caption": 7}),  # 7
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    source = JsonlSource(path, root=tmp_path / "imgs")
    records = list(source)
    assert [(r.key, r.caption) for r in records] == [("a.jpg#0", "A cat"), ("a.jpg#1", "A cat again")]
    assert records[0].meta == {"url": "http://x"}
    assert records[0].image == str(tmp_path / "imgs" / "a.jpg")
    assert [key for key, _ in reasons(source)] == ["pairs.jsonl:2", "pairs.jsonl:3", "pairs.jsonl:4", "pairs.jsonl:7"]
    assert [reason for _, reason in reasons(source)][1:] == [
        "not a JSON object",
        "missing caption field",
        "caption is not a string",
    ]
    assert reasons(source)[0][1].startswith("bad JSON")


def test_jsonl_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b'{"image": "a.jpg", "caption": "caf\xe9"}\n{"image": "b.jpg", "caption": "ok"}\n')
    source = JsonlSource(path)
    assert [r.key for r in source] == ["b.jpg#0"]
    assert reasons(source) == [("pairs.jsonl:1", "non-UTF-8 caption")]


# ------------------------------------------------------------------ WebDataset


def jpeg_bytes(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 12), colour).save(buffer, "JPEG")
    return buffer.getvalue()


def png_bytes(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 12), colour).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    folder = tmp_path / "shards"
    folder.mkdir()
    write_tar(
        folder / "00000.tar",
        [
            ("000000000.jpg", jpeg_bytes((255, 0, 0))),
            ("000000000.txt", b"A red square .\n"),
            ("000000000.json", json.dumps({"url": "http://a", "width": 16}).encode()),
            ("000000001.png", png_bytes((0, 0, 255))),
            ("000000001.txt", "Un carr\u00e9 bleu".encode()),
            ("000000002.jpg", jpeg_bytes((0, 255, 0))),  # no caption: skipped
        ],
    )
    write_tar(
        folder / "00001.tar",
        [("000010000.jpg", jpeg_bytes((0, 255, 0))), ("000010000.txt", b"green"), ("000010000.json", b"{}")],
    )
    return folder


# "error": an unclosed shard file (ResourceWarning) fails the test.
@pytest.mark.filterwarnings("error")
def test_webdataset_records(shards: Path) -> None:
    source = WebDatasetSource(str(shards / "00000.tar"))
    records = list(source)
    assert [r.key for r in records] == ["000000000", "000000001"]
    assert [r.caption for r in records] == ["A red square .", "Un carr\u00e9 bleu"]
    assert records[0].meta == {"url": "http://a", "width": 16}
    assert records[1].meta == {}
    assert isinstance(records[0].image, bytes)
    r, g, b = load_image(records[0].image).getpixel((8, 6))
    assert r > 200 and g < 50 and b < 50
    assert load_image(records[1].image).getpixel((0, 0)) == (0, 0, 255)
    assert reasons(source) == [("000000002", "missing caption file")]


@pytest.mark.filterwarnings("error")
def test_webdataset_brace_pattern_and_directory(shards: Path) -> None:
    pattern = str(shards / "{00000..00001}.tar")
    by_pattern = WebDatasetSource(pattern)
    assert by_pattern.shards == [str(shards / "00000.tar"), str(shards / "00001.tar")]
    assert [r.key for r in by_pattern] == ["000000000", "000000001", "000010000"]
    by_dir = WebDatasetSource(shards)
    assert by_dir.shards == by_pattern.shards
    # One source per subset of shards is how callers split work.
    assert [r.key for r in WebDatasetSource(by_dir.shards[1:])] == ["000010000"]


def test_webdataset_unreadable_shard_is_recorded(shards: Path) -> None:
    data = (shards / "00000.tar").read_bytes()
    (shards / "00000.tar").write_bytes(data[: len(data) // 2])  # a download cut short
    source = WebDatasetSource(shards)
    keys = [r.key for r in source]
    assert keys[-1] == "000010000"  # the next shard is still read
    assert "000000001" not in keys
    assert [(item.key, item.reason) for item in source.bad] == [(str(shards / "00000.tar"), "unreadable shard")]


def test_webdataset_missing_shard(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.tar"):
        WebDatasetSource(str(tmp_path / "nope.tar"))


# ------------------------------------------------------------------ open_source


def tiny_flickr(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "splits").mkdir()
    write_csv(root / "captions.csv", [["image", "caption"], ["a.jpg", "one"], ["a.jpg", "two"], ["b.jpg", "three"]])
    (root / "splits" / "train.txt").write_text("b.jpg\n")
    (root / "splits" / "test.txt").write_text("a.jpg\n")
    return root


def test_open_source_dispatch(tmp_path: Path, shards: Path) -> None:
    csv_path = write_csv(tmp_path / "p.csv", [["image", "caption"], ["a.jpg", "x"]])
    tsv_path = write_csv(tmp_path / "p.tsv", [["image", "caption"], ["a.jpg", "x"]], "\t")
    jsonl_path = tmp_path / "p.jsonl"
    jsonl_path.write_text(json.dumps({"image": "a.jpg", "caption": "x"}) + "\n")
    assert isinstance(open_source(str(csv_path)), CsvSource)
    assert isinstance(open_source(tsv_path), CsvSource)
    assert isinstance(open_source(str(jsonl_path)), JsonlSource)
    assert isinstance(open_source(str(shards / "00000.tar")), WebDatasetSource)
    assert isinstance(open_source(str(shards / "{00000..00001}.tar")), WebDatasetSource)
    assert len(open_source(str(shards)).shards) == 2
    # kwargs reach the constructor
    assert next(iter(open_source(str(csv_path), root="/data"))).image == "/data/a.jpg"

    flickr = tiny_flickr(tmp_path / "flickr")
    by_dir = open_source(str(flickr))
    assert isinstance(by_dir, Flickr8k) and by_dir.split == "train"
    by_spec = open_source(f"flickr8k:{flickr}:test")
    assert isinstance(by_spec, Flickr8k) and [r.key for r in by_spec] == ["a.jpg#0", "a.jpg#1"]
    assert open_source(f"flickr8k:{flickr}").split == "train"


def test_open_source_unknown(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"accepted: a \.csv"):
        open_source(str(tmp_path / "data.parquet"))
    with pytest.raises(ValueError, match="neither"):
        open_source(str(tmp_path))  # an empty directory


def test_records_are_frozen() -> None:
    record = Record("k", "p.jpg", "c", {})
    with pytest.raises(AttributeError):
        record.caption = "other"  # type: ignore[misc]
