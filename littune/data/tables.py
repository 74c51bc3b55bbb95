"""The one strict reader of tabular files (CSV/TSV and JSON lines) behind every command.

Python's ``csv`` module is forgiving: one unclosed quote makes it read the rest of the file as a
single field, so rows vanish into a neighbour's caption and nothing is reported. Here every
record is checked against the physical lines it came from, and a malformed one is yielded as
``(line, reason)`` (the caller lists it under the bad-input policy) instead of being folded in:

- a quote that never closes (the reader reaches the end of the file inside a quoted field);
- a quoted field that holds a line break and then the separator (what an unclosed quote looks
  like when a later quote closes it: whole rows inside one field);
- more fields than the header has (a row with fewer lacks a field, and is refused naming it:
  "missing caption field");
- any field longer than ``MAX_FIELD_CHARS`` (far beyond any text tower's context).

After a malformed record the reader starts again on the line after the one it began on, so one
bad quote costs one row, never the rest of the file. A quoted caption over several lines without
the separator (what pandas and ``csv.writer`` write for a caption holding a line break) is kept.
"""
from __future__ import annotations

import csv
import json
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["MAX_FIELD_CHARS", "csv_header", "csv_rows", "jsonl_rows"]

# The longest context of any text tower littune builds is 512 tokens; a token is rarely more
# than 8 characters, so a field of more than 4096 is never one caption.
MAX_FIELD_CHARS = 4096

Row = tuple[int, "dict[str, Any] | str"]  # (line, fields) or (line, why it is refused)


def _open(path: Path):
    # utf-8-sig drops a BOM; surrogateescape keeps undecodable bytes so each bad row can be
    # reported and skipped instead of the whole file failing.
    return path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")


class _Lines:
    """The file's physical lines, numbered, with lines pushed back read again (to resynchronise)."""

    def __init__(self, stream) -> None:
        self.stream, self.back = stream, deque()
        self.next_line = 1  # the number of the line the next __next__ returns
        self.taken: list[str] = []  # lines handed out since ``mark``

    def mark(self) -> int:
        self.taken = []
        return self.next_line

    def rewind(self, start: int) -> None:
        """Read again every line taken since ``mark`` except the first (the bad record's own line)."""
        self.back.extendleft(reversed(self.taken[1:]))
        self.next_line = start + 1

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        line = self.back.popleft() if self.back else next(self.stream)
        self.taken.append(line)
        self.next_line += 1
        return line


def csv_header(path: Path, sep: str) -> list[str]:
    with _open(path) as stream:
        try:
            return next(csv.reader(stream, delimiter=sep, strict=True))
        except StopIteration:
            raise ValueError(f"{path}: empty file, expected a header row") from None
        except csv.Error as exc:
            raise ValueError(f"{path} line 1: malformed header ({exc})") from None


def csv_rows(path: Path, sep: str) -> Iterator[Row]:
    """Yield (first line of the record, {column: field}) or (line, reason) for each record."""
    with _open(path) as stream:
        lines = _Lines(stream)
        reader = csv.reader(lines, delimiter=sep, strict=True)
        header: list[str] | None = None
        while True:
            start = lines.mark()
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                reason = ("unclosed quote (the file ends inside a quoted field)" if "unexpected end" in str(exc)
                          else f"malformed row ({exc})")
                yield start, reason
                lines.rewind(start)
                continue
            if header is None:
                header = fields
                continue
            if not fields:
                continue  # a blank line
            reason = _check(fields, len(header), sep)
            if reason:
                yield start, reason
                if len(lines.taken) > 1:
                    lines.rewind(start)
                continue
            yield start, dict(zip(header, fields + [None] * (len(header) - len(fields))))


def _check(fields: list[str], n_header: int, sep: str) -> str:
    for f in fields:
        newline = f.find("\n")
        if newline >= 0 and sep in f[newline:]:
            return (f"a quoted field holds a line break and then the separator {sep!r}, as rows swallowed by an "
                    "unclosed quote do")
    if len(fields) > n_header:  # fewer: the missing fields are None, and the row is refused by what it lacks
        return f"{len(fields)} fields, the header has {n_header}"
    longest = max(len(f) for f in fields)
    if longest > MAX_FIELD_CHARS:
        return f"a field of {longest} characters (at most {MAX_FIELD_CHARS}; longer than any text context)"
    return ""


def jsonl_rows(path: Path) -> Iterator[Row]:
    """Yield (line, object) or (line, reason) for each non-blank line of a JSON-lines file."""
    with path.open(encoding="utf-8-sig", errors="surrogateescape") as stream:
        for line, text in enumerate(stream, start=1):
            if not text.strip():
                continue  # blank lines (e.g. a trailing one) are not rows
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                yield line, f"bad JSON ({exc.msg} at column {exc.colno})"
                continue
            if not isinstance(row, dict):
                yield line, "not a JSON object"
                continue
            long = [k for k, v in row.items() if isinstance(v, str) and len(v) > MAX_FIELD_CHARS]
            if long:
                yield line, (f"field {long[0]!r} of {len(row[long[0]])} characters (at most {MAX_FIELD_CHARS}; "
                             "longer than any text context)")
                continue
            yield line, row
