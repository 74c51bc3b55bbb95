"""The strict table reader: a malformed row is listed with its file and line, never folded into a neighbour.

Before: Python's forgiving csv reader read everything after an unclosed quote as one caption (25 of
40 rows gone, exit 0, no bad input listed).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from littune.data.sources import CsvSource, JsonlSource
from littune.data.tables import MAX_FIELD_CHARS


def rows(n: int, start: int = 0) -> list[str]:
    return [f"img{i}.jpg,caption number {i}\n" for i in range(start, start + n)]


def reasons(source) -> list[tuple[str, str]]:
    return [(b.key, b.reason) for b in source.bad]


def test_unclosed_quote_costs_one_row_not_the_rest_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text("image,caption\n" + "".join(rows(10)) + 'broken.jpg,"a dog on the grass\n' + "".join(rows(10, 10)))
    source = CsvSource(path)
    keys = [r.key for r in source]
    assert keys == [f"img{i}.jpg#0" for i in range(20)]  # every good row kept
    ((where, why),) = reasons(source)
    assert where == "pairs.csv:12" and "unclosed quote" in why
    assert "pairs.csv line 12" in source.bad.items[0].detail


def test_quote_closed_rows_later_is_refused_and_the_rows_between_kept(tmp_path: Path) -> None:
    path = tmp_path / "pairs.tsv"
    lines = ["image\tcaption\n", 'a.jpg\t"opens here\n', "b.jpg\tplain\n", 'c.jpg\tcloses" here\n', 'd.jpg\t"last"\n']
    path.write_text("".join(lines))
    source = CsvSource(path)
    # a stray quote inside an unquoted field is literal text: c.jpg's caption is 'closes" here'
    assert [r.key for r in source] == ["b.jpg#0", "c.jpg#0", "d.jpg#0"]
    assert [k for k, _ in reasons(source)] == ["pairs.tsv:2"]
    assert "malformed row" in reasons(source)[0][1]


def test_wrong_field_count_and_overlong_field(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text("image,caption\na.jpg,ok\nb.jpg,one,two\nc.jpg\n" f"d.jpg,{'x' * (MAX_FIELD_CHARS + 1)}\ne.jpg,fine\n")
    source = CsvSource(path)
    assert [r.key for r in source] == ["a.jpg#0", "e.jpg#0"]
    got = reasons(source)
    assert got[0] == ("pairs.csv:3", "3 fields, the header has 2")
    assert got[1] == ("pairs.csv:4", "missing caption field")
    assert got[2][0] == "pairs.csv:5" and f"at most {MAX_FIELD_CHARS}" in got[2][1]


def test_a_written_multiline_caption_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([["image", "caption"], ["a.jpg", "two\nlines"], ["b.jpg", 'say "hi", twice']])
    assert [r.caption for r in CsvSource(path)] == ["two\nlines", 'say "hi", twice']


def test_jsonl_overlong_caption_is_listed(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"image": "a.jpg", "caption": "y" * (MAX_FIELD_CHARS + 1)}) + "\n"
                    + json.dumps({"image": "b.jpg", "caption": "ok"}) + "\n")
    source = JsonlSource(path)
    assert [r.key for r in source] == ["b.jpg#0"]
    assert reasons(source)[0][0] == "pairs.jsonl:1"


def test_malformed_header_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text('image,"caption\na.jpg,x\n')
    with pytest.raises(ValueError, match=r"pairs\.csv line 1"):
        CsvSource(path)
