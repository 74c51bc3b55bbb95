"""Property-based tests (Hypothesis) of the table readers and the config's ranges.

- What csv.writer writes, the strict reader reads back exactly, whatever the captions hold (quotes,
  separators, line breaks without the separator after them).
- On any text at all, the reader ends, raises nothing, invents or duplicates no row, and never yields
  a caption holding a line break and then the separator, or one over the length limit.
- JSON lines round-trip.
- Any number for any config key is accepted exactly when its declared range holds it, else refused
  in one line naming the key.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from littune.config.experiment import load_config, validate
from littune.config.loader import ConfigError
from littune.config.ranges import RANGES, check_key
from littune.data.sources import CsvSource, JsonlSource
from littune.data.tables import MAX_FIELD_CHARS

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from('",\t\n\r '), max_size=40)
caption = text.filter(lambda c: c.strip() and not ("\n" in c and "," in c[c.find("\n"):]) and "\r" not in c)
image = st.from_regex(r"[a-z]{1,8}/[a-z0-9]{1,8}\.jpg", fullmatch=True)


@SETTINGS
@given(st.lists(st.tuples(image, caption), min_size=1, max_size=12))
def test_what_csv_writer_writes_is_read_back(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("p") / "pairs.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["image", "caption"], *rows])
    source = CsvSource(path)
    assert [(r.image_key, r.caption) for r in source] == [(i, c.strip()) for i, c in rows]
    assert len(source.bad) == 0


@SETTINGS
@given(st.lists(text, min_size=0, max_size=15))
def test_any_text_is_read_without_inventing_or_folding_rows(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("p") / "pairs.csv"
    body = "image,caption\n" + "\n".join(lines) + "\n"
    path.write_text(body, encoding="utf-8")
    source = CsvSource(path)
    records = list(source)
    physical = body.count("\n") + body.count("\r")
    assert len(records) + len(source.bad) <= physical  # each row once, at most one per line it began on
    for r in records:
        newline = r.caption.find("\n")
        assert newline < 0 or "," not in r.caption[newline:]
        assert len(r.caption) <= MAX_FIELD_CHARS
    keys = [b.key for b in source.bad]
    assert len(keys) == len(set(keys))


@SETTINGS
@given(st.lists(st.tuples(image, caption), min_size=1, max_size=12))
def test_jsonl_round_trips(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("p") / "pairs.jsonl"
    path.write_text("".join(json.dumps({"image": i, "caption": c}) + "\n" for i, c in rows), encoding="utf-8")
    assert [(r.image_key, r.caption) for r in JsonlSource(path)] == [(i, c.strip()) for i, c in rows]


BASE = load_config(None, ["data.train=x.csv"])
numbers = st.one_of(st.integers(min_value=-(10**20), max_value=10**20),
                    st.floats(allow_nan=True, allow_infinity=True))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(RANGES)), numbers)
def test_any_number_for_any_key_is_in_range_or_refused_by_name(key, value):
    cfg = copy.deepcopy(BASE)
    *path, last = key.split(".")
    node = cfg
    for part in path:
        node = getattr(node, part)
    setattr(node, last, value)
    try:
        check_key(cfg, key)
        in_range = True
    except ConfigError:
        in_range = False
    assert in_range == (math.isfinite(value) and in_range)  # nothing non-finite is ever in range
    try:
        validate(cfg)
    except ConfigError as e:
        # in range but needing other keys too: text tower options, WiSE-FT's alpha (a tuned text tower),
        # class anchors (both towers locked and cached; the base config tunes its text tower)
        cross_key = key.startswith("model.text.") or key in ("train.interpolate_alpha", "train.anchors.weight")
        assert not in_range or cross_key, (key, value, e)
        assert "\n" not in str(e)
        if not in_range:
            assert key in str(e), (key, value, str(e))
    else:
        assert in_range, (key, value)
