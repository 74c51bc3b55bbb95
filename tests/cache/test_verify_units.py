"""``cache/verify.py`` on tiny caches written by hand in ``tmp_path`` (no tower, no embedding): a
sound cache passes both levels of the check, and each way its files or its manifest can disagree
is found, named by shard, file and what differs, and reported in the one error a user reads.

Fast (well under a second per test) so the mutation benchmark can run it once per planted fault;
``tests/faults/test_cache_integrity.py`` does the same end to end through ``littune embed``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from littune.cache.manifest import CacheCorrupt, Manifest
from littune.cache.verify import (VerifyReport, check_cache, manifest_problems, npy_header, parquet_rows, repair_hint,
                                  sha256_file, shard_problems, shard_record, source_digest, source_summary)

WIDTH, SHARD = 4, 4
IMG = "img_emb/img_emb_{}.npy"
VIEWS = "img_emb_views/img_emb_{}.npy"
META = "metadata/metadata_{}.parquet"
BAD = "bad/bad_{}.tsv"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _save(path: Path, array: np.ndarray, version: tuple[int, int] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.lib.format.write_array(f, array, version=version)


def _metadata(path: Path, keys: list[str], captions: list[list[str]] | None, digests: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns: dict = {"key": keys}
    if captions is not None:
        columns["captions"] = captions
    if digests:
        columns["sha256"] = [hashlib.sha256(k.encode()).hexdigest() for k in keys]
        columns["bytes"] = pa.array([100 + i for i in range(len(keys))], pa.int64())
    pq.write_table(pa.table(columns), path)


def build(folder: Path, rows: list[int], *, n_bad: int = 0, views: int = 0, dtype: str = "float16",
          captions: int | None = 1, digests: bool = True, shard_size: int = SHARD) -> Manifest:
    """A finished cache of shards holding ``rows`` embeddings each (``n_bad`` inputs skipped),
    files and manifest as ``littune embed`` leaves them."""
    m = Manifest(tower="timm:test_vit", fingerprint="f" * 16, preprocess={}, embed_dim=WIDTH, dtype=dtype,
                 source="/data/pairs.csv", shard_size=shard_size, views=views, n_items=sum(rows) + n_bad)
    start, n_captions = 0, 0
    for k, n in enumerate(rows):
        rng = np.random.default_rng(k)
        _save(folder / IMG.format(k), rng.standard_normal((n, WIDTH)).astype(dtype))
        if views:
            _save(folder / VIEWS.format(k), rng.standard_normal((n, views, WIDTH)).astype(dtype))
        caps = None if captions is None else [[f"image {start + i} caption {c}" for c in range(captions)]
                                              for i in range(n)]
        n_captions += 0 if caps is None else n * captions
        _metadata(folder / META.format(k), [f"img{start + i:03d}" for i in range(n)], caps, digests)
        (folder / BAD.format(k)).parent.mkdir(parents=True, exist_ok=True)
        (folder / BAD.format(k)).write_text("")
        m.shards.append(shard_record(folder, m, k, start))
        start += n
    m.count, m.n_bad, m.n_captions, m.complete = start, n_bad, n_captions, True
    m.write(folder)
    return m


@pytest.fixture
def cache(tmp_path) -> tuple[Path, Manifest]:
    folder = tmp_path / "cache"
    return folder, build(folder, [4, 4, 2])  # 10 images in shards of 4, 4 and 2


def _rewrite_manifest(folder: Path, **changes) -> Manifest:
    m = Manifest.read(folder)
    for k, v in changes.items():
        setattr(m, k, v)
    m.write(folder)
    return m


# --- a sound cache -----------------------------------------------------------------------------

def test_a_sound_cache_passes_the_cheap_and_the_full_check(cache):
    folder, m = cache
    report = check_cache(folder)  # the manifest read from the folder
    assert (report.ok, report.problems, report.kind, report.n_shards, report.n_files) == (True, {}, "embedding", 3, 0)
    full = check_cache(folder, m, hashes=True)
    assert (full.ok, full.n_files) == (True, 6)  # each shard's embeddings and metadata
    assert all(shard_problems(folder, m, k, m.shards[k]) == [] for k in range(3))
    assert all(shard_problems(folder, m, k, m.shards[k], hashes=True) == [] for k in range(3))


def test_a_shard_of_only_bad_images_and_the_edges_of_the_manifest_are_sound(tmp_path):
    folder = tmp_path / "c"
    m = build(folder, [4, 0, 1], n_bad=4)  # every image of shard 1 unreadable: an empty shard
    assert m.shards[1]["count"] == 0 and check_cache(folder, hashes=True).problems == {}
    one = build(tmp_path / "one", [1, 1], shard_size=1)  # shards of one image
    report = check_cache(tmp_path / "one", hashes=True)
    assert (report.problems, report.n_shards, report.n_files) == ({}, 2, 4) and manifest_problems(one) == []
    edge = Manifest(tower="t", fingerprint="f", preprocess={}, embed_dim=1, dtype="float16", source="s",
                    shard_size=1, n_items=1, count=0, n_bad=1, n_captions=0)
    assert manifest_problems(edge) == []  # the smallest valid values of each count


def test_shard_record_holds_rows_offsets_and_each_files_sha256(tmp_path):
    folder = tmp_path / "c"
    m = build(folder, [4, 3], views=2, n_bad=1)
    t = pq.read_table(folder / META.format(1))
    digest = hashlib.sha256("".join(f"{k}\t{d}\n" for k, d in zip(t["key"].to_pylist(), t["sha256"].to_pylist()))
                            .encode()).hexdigest()
    assert shard_record(folder, m, 1, 4) == {
        "index": 1, "count": 3, "start": 4, "end": 7, "width": WIDTH, "dtype": "float16",
        "files": {IMG.format(1): _sha(folder / IMG.format(1)), VIEWS.format(1): _sha(folder / VIEWS.format(1)),
                  META.format(1): _sha(folder / META.format(1))},
        "source": {"sha256": digest, "bytes": 303, "images": 3}}
    assert check_cache(folder, hashes=True).n_files == 6  # 3 files a shard with --views
    plain = build(tmp_path / "plain", [2], dtype="float32", digests=False)  # no per-image hashes: no "source"
    assert plain.shards[0] == {"index": 0, "count": 2, "start": 0, "end": 2, "width": WIDTH, "dtype": "float32",
                               "files": {IMG.format(0): _sha(tmp_path / "plain" / IMG.format(0)),
                                         META.format(0): _sha(tmp_path / "plain" / META.format(0))}}
    assert source_summary(tmp_path / "plain", 0) is None


def test_source_digest_takes_any_key_a_file_name_can_give(tmp_path):
    keys = ["a", "photo_\udcff.jpg"]  # a non-UTF-8 file name as os.fsdecode gives it
    want = hashlib.sha256("a\td1\nphoto_\udcff.jpg\td2\n".encode("utf-8", "surrogatepass")).hexdigest()
    assert source_digest(keys, ["d1", "d2"]) == want
    assert source_digest(["a"], ["d1"]) != source_digest(["a"], ["d2"]) != source_digest([], [])


def test_sha256_file_is_the_files_sha256_whatever_the_chunk(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * 3)
    assert sha256_file(path) == sha256_file(path, chunk=7) == _sha(path)


# --- one shard's files against its record (the cheap check) ----------------------------------

def _shorter_npy(f: Path, k: int) -> None:
    _save(f / IMG.format(k), np.load(f / IMG.format(k))[:-1])


def _other_width(f: Path, k: int) -> None:
    _save(f / IMG.format(k), np.load(f / IMG.format(k))[:, :3])


def _other_dtype(f: Path, k: int) -> None:
    _save(f / IMG.format(k), np.load(f / IMG.format(k)).astype(np.float32))


def _short_metadata(f: Path, k: int) -> None:
    path = f / META.format(k)
    pq.write_table(pq.read_table(path).slice(0, 3), path)


def _missing(rel: str):
    return lambda f, k: (f / rel.format(k)).unlink()


def _scalar(f: Path, k: int) -> None:
    _save(f / IMG.format(k), np.array(1.0, dtype=np.float16))


DAMAGE = {  # damage to shard 1 (4 rows of width 4, float16) -> exactly what is reported, in order
    "fewer rows": (_shorter_npy, ["img_emb/img_emb_1.npy has shape 3 x 4, the manifest says 4 x 4",
                                  "metadata/metadata_1.parquet has 4 rows, img_emb/img_emb_1.npy has 3"]),
    "another width": (_other_width, ["img_emb/img_emb_1.npy has shape 4 x 3, the manifest says 4 x 4"]),
    "another dtype": (_other_dtype, ["img_emb/img_emb_1.npy holds float32, the manifest says float16"]),
    "a 0-d array": (_scalar, ["img_emb/img_emb_1.npy has shape , the manifest says 4 x 4"]),
    "metadata a row short": (_short_metadata, ["metadata/metadata_1.parquet has 3 rows, img_emb/img_emb_1.npy has 4"]),
    "embeddings missing": (_missing(IMG), ["img_emb/img_emb_1.npy is missing"]),
    "metadata missing": (_missing(META), ["metadata/metadata_1.parquet is missing"]),
    "bad-input list missing": (_missing(BAD), ["bad/bad_1.tsv is missing"]),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_a_damaged_shard_is_named_with_what_differs(case, cache):
    folder, m = cache
    damage, want = DAMAGE[case]
    damage(folder, 1)
    assert shard_problems(folder, m, 1, m.shards[1]) == want
    assert shard_problems(folder, m, 0, m.shards[0]) == []
    assert check_cache(folder, m).problems == {1: want}


def test_a_truncated_or_overlong_npy_says_by_how_much(cache):
    folder, m = cache
    path = folder / IMG.format(1)
    size = path.stat().st_size  # header + 4 x 4 float16
    path.write_bytes(path.read_bytes()[:-5])
    assert npy_header(folder, IMG.format(1)) == \
        f"{IMG.format(1)} is truncated ({size - 5} bytes, its header says {size})"
    path.write_bytes(path.read_bytes() + b"\0" * 7)
    assert check_cache(folder, m).problems == {1: [f"{IMG.format(1)} is longer than its header says ({size + 2} bytes, "
                                                   f"its header says {size})"]}


def test_a_file_that_is_no_npy_or_no_parquet_is_named(cache):
    folder, m = cache
    (folder / IMG.format(0)).write_bytes(b"not an array")
    (folder / META.format(2)).write_bytes(b"PAR1 not a parquet file")
    problems = check_cache(folder, m).problems
    assert list(problems) == [0, 2] and len(problems[0]) == len(problems[2]) == 1
    assert problems[0][0].startswith(f"{IMG.format(0)} is not a readable .npy file (")
    assert problems[2][0].startswith(f"{META.format(2)} is not a readable parquet file (ArrowInvalid: ")
    assert parquet_rows(folder, META.format(2)) == problems[2][0]
    assert parquet_rows(folder, META.format(1)) == 4
    assert parquet_rows(folder, "nope.parquet") == "nope.parquet is missing"


def test_an_npy_with_a_version_2_header_is_read(cache):
    folder, m = cache
    array = np.load(folder / IMG.format(1))
    _save(folder / IMG.format(1), array, version=(2, 0))  # numpy writes 2.0 for a header over 64 KiB
    assert npy_header(folder, IMG.format(1)) == ((4, WIDTH), np.dtype("float16"))
    assert shard_problems(folder, m, 1, m.shards[1]) == []
    _save(folder / IMG.format(1), array[:2], version=(2, 0))
    assert shard_problems(folder, m, 1, m.shards[1])[0] == f"{IMG.format(1)} has shape 2 x 4, the manifest says 4 x 4"


def test_the_views_of_a_multi_view_cache_are_checked_against_its_embeddings(tmp_path):
    folder = tmp_path / "c"
    m = build(folder, [4, 2], views=2)
    assert check_cache(folder, hashes=True).problems == {}
    views = folder / VIEWS.format(1)
    _save(views, np.load(views)[:, :1])
    what = "img_emb/img_emb_1.npy with --views 2"
    assert shard_problems(folder, m, 1, m.shards[1]) == [
        f"{VIEWS.format(1)} has shape 2 x 1 x 4, {what} says 2 x 2 x 4"]
    _save(views, np.zeros((2, 2, WIDTH), np.float32))
    assert shard_problems(folder, m, 1, m.shards[1]) == [f"{VIEWS.format(1)} holds float32, {what} says float16"]
    _save(views, np.zeros((3, 2, WIDTH), np.float16))  # one row more than the shard's embeddings
    assert shard_problems(folder, m, 1, m.shards[1]) == [
        f"{VIEWS.format(1)} has shape 3 x 2 x 4, {what} says 2 x 2 x 4"]
    views.unlink()
    assert check_cache(folder, m).problems == {1: [f"{VIEWS.format(1)} is missing"]}


# --- a shard without a record (left by a killed run): checked against the cache's settings ----

def test_a_shard_without_a_record_is_checked_against_the_settings(cache):
    folder, m = cache
    assert shard_problems(folder, m, 0, None) == [] and shard_problems(folder, m, 2, None) == []  # 4 rows: a full shard
    _save(folder / IMG.format(0), np.zeros((SHARD + 1, WIDTH), np.float16))
    _metadata(folder / META.format(0), [f"k{i}" for i in range(SHARD + 1)], None)
    assert shard_problems(folder, m, 0) == [f"{IMG.format(0)} has 5 rows, more than the shard size 4"]
    _save(folder / IMG.format(0), np.zeros((SHARD, 3), np.float32))
    assert shard_problems(folder, m, 0) == [
        f"{IMG.format(0)} has shape 4 x 3, the cache's settings says ? x 4",
        f"{IMG.format(0)} holds float32, the cache's settings says float16",
        f"{META.format(0)} has 5 rows, {IMG.format(0)} has 4"]
    (folder / IMG.format(0)).unlink()
    assert shard_problems(folder, m, 0) == [f"{IMG.format(0)} is missing"]


def test_a_record_of_its_own_width_and_dtype_is_what_the_files_are_held_to(cache):
    folder, m = cache
    _save(folder / IMG.format(1), np.zeros((4, 3), np.float32))
    rec = dict(m.shards[1], width=3, dtype="float32")
    assert shard_problems(folder, m, 1, rec) == []
    assert shard_problems(folder, m, 1, m.shards[1]) == [f"{IMG.format(1)} has shape 4 x 3, the manifest says 4 x 4",
                                                         f"{IMG.format(1)} holds float32, the manifest says float16"]


# --- the full check: SHA-256 ------------------------------------------------------------------

def test_a_changed_byte_is_found_only_by_the_full_check(cache):
    folder, m = cache
    path = folder / IMG.format(2)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # one bit of the last embedding: header and size as before
    path.write_bytes(bytes(data))
    changed = [f"{IMG.format(2)}: SHA-256 differs from the one recorded when it was written (the file changed)"]
    assert shard_problems(folder, m, 2, m.shards[2]) == []  # the default is the cheap check
    assert shard_problems(folder, m, 2, m.shards[2], hashes=True) == changed
    assert check_cache(folder, m).ok  # so is check_cache's
    report = check_cache(folder, m, hashes=True)
    assert report.problems == {2: changed} and report.n_files == 4  # the sound shards' files


def test_hashes_are_compared_only_for_files_that_pass_the_cheap_check(cache):
    folder, m = cache
    _short_metadata(folder, 1)  # changed, and so its SHA-256 too: one problem, not two
    assert shard_problems(folder, m, 1, m.shards[1], hashes=True) == [
        f"{META.format(1)} has 3 rows, {IMG.format(1)} has 4"]


def test_a_shard_recorded_without_hashes_says_how_to_record_them(cache):
    folder, m = cache
    rec = {k: v for k, v in m.shards[0].items() if k != "files"}
    assert shard_problems(folder, m, 0, rec) == []
    assert shard_problems(folder, m, 0, rec, hashes=True) == [
        "no SHA-256 recorded for its files (made by an older littune); its `littune embed` run again records them, "
        "re-embedding nothing"]


# --- the manifest against itself and the shards -------------------------------------------------

def test_an_unfinished_cache_is_reported_as_such(cache):
    folder, m = cache
    m.complete = False
    report = check_cache(folder, m)
    assert report.problems == {-1: ["embedding did not finish"]} and report.n_shards == 3


@pytest.mark.parametrize("changes, want", [
    ({"shard_size": -1}, ["the manifest's shard size is -1; it must be >= 1"]),
    ({"n_items": 0, "count": 0}, ["the manifest lists 0 images; a finished cache holds at least one"]),
    ({"count": 11}, ["the manifest's count (11 embeddings) is outside 0..10 (its images)"]),
    ({"count": -1}, ["the manifest's count (-1 embeddings) is outside 0..10 (its images)"]),
    ({"count": 7, "n_bad": 1}, ["10 images, 7 embedded and 1 listed as bad: 2 vanished without a reason"]),
    ({"n_captions": -1}, ["the manifest's n_captions (-1) or embed_dim (4) is impossible"]),
    ({"embed_dim": 0}, ["the manifest's n_captions (10) or embed_dim (0) is impossible"]),
])
def test_impossible_manifest_counts_are_named(cache, changes, want):
    folder, m = cache
    for k, v in changes.items():
        setattr(m, k, v)
    assert manifest_problems(m) == want
    assert check_cache(folder, m).problems == {-1: want}  # and the shards are not read


def test_a_manifest_with_a_shard_size_of_zero_is_reported_not_a_crash(cache):
    folder, m = cache
    m.shard_size = 0
    report = check_cache(folder, m)
    assert report.problems == {-1: ["the manifest's shard size is 0; it must be >= 1"]} and report.n_shards == 0
    assert str(report.error()).startswith(f"embedding cache {folder} is damaged: the manifest's shard size is 0")


def test_several_impossible_counts_are_all_named(cache):
    folder, m = cache
    m.shard_size, m.n_items, m.count, m.embed_dim = 0, 0, 3, 0
    assert manifest_problems(m) == ["the manifest's shard size is 0; it must be >= 1",
                                    "the manifest lists 0 images; a finished cache holds at least one",
                                    "the manifest's count (3 embeddings) is outside 0..0 (its images)",
                                    "the manifest's n_captions (10) or embed_dim (0) is impossible"]


def test_shard_records_that_do_not_make_the_cache_are_named(cache):
    folder, m = cache
    m.shards = [m.shards[0], m.shards[2]]
    assert check_cache(folder, m).problems == {
        -1: ["the manifest lists shards [0, 2], 10 images in shards of 4 make 3"]}


def test_a_record_out_of_order_or_miscounted_is_named(cache):
    folder, m = cache
    m.shards[1] = dict(m.shards[1], start=5)
    assert check_cache(folder, m).problems == {-1: ["shard 1 starts at row 5, the shards before it end at 4"]}
    m.shards[1]["start"] = 4
    m.count = 9
    m.n_bad = 1
    assert check_cache(folder, m).problems == {-1: ["the shards hold 10 rows, the manifest's count is 9"]}


def test_a_record_of_another_width_or_too_many_rows_is_named(cache):
    folder, m = cache
    m.shards[1] = dict(m.shards[1], width=8)
    m.shards[2] = dict(m.shards[2], count=SHARD + 1)
    assert check_cache(folder, m).problems == {
        1: ["the manifest records width 8 for it, the cache's embed_dim is 4",
            f"{IMG.format(1)} has shape 4 x 4, the manifest says 4 x 8"],
        2: ["the manifest records 5 rows for it, a shard holds 0..4",
            f"{IMG.format(2)} has shape 2 x 4, the manifest says 5 x 4"],
        -1: ["the shards hold 13 rows, the manifest's count is 10"]}
    m.shards[2]["count"] = SHARD  # exactly a shard: the record is possible, its files do not match it
    assert check_cache(folder, m).problems[2] == [f"{IMG.format(2)} has shape 2 x 4, the manifest says 4 x 4"]


def test_a_record_without_a_row_count_is_held_to_its_files_and_neighbours(cache):
    folder, m = cache
    del m.shards[1]["count"]
    assert check_cache(folder, m).problems == {-1: ["shard 2 starts at row 8, the shards before it end at 4",
                                                    "the shards hold 6 rows, the manifest's count is 10"]}


@pytest.mark.parametrize("names, listed", [
    (["img_emb_3.npy"], "img_emb_3.npy"),  # shard 3 of a 3-shard cache: one too many
    ([f"img_emb_{k}.npy" for k in (3, 4, 5, 6)], "img_emb_3.npy, img_emb_4.npy, img_emb_5.npy"),  # the first 3
])
def test_shard_files_beyond_the_manifest_are_named(cache, names, listed):
    folder, m = cache
    for name in names:
        _save(folder / "img_emb" / name, np.zeros((1, WIDTH), np.float16))
    assert check_cache(folder, m).problems == {-1: [f"the manifest lists 3 shards, img_emb/ also holds {listed}"]}


def test_other_files_in_img_emb_are_not_shards(cache):
    folder, m = cache
    for name in ("img_emb_old.npy", "img_emb_2.npy.bak", "notes.txt"):
        (folder / "img_emb" / name).write_bytes(b"x")
    assert check_cache(folder, m).problems == {}


# --- captions ---------------------------------------------------------------------------------

@pytest.mark.parametrize("n_bad, n_captions, ok", [
    (0, 10, True),  # every image kept: every caption is in the metadata
    (0, 11, False),  # one caption fewer than the manifest says, and nothing was skipped
    (0, 9, False),  # one more
    (1, 11, True),  # a bad image's caption is not in the metadata
    (1, 9, False),  # more captions than the manifest ever had
    (2, 10, True),  # exactly as many, bad images or not
])
def test_the_metadata_captions_against_the_manifest(tmp_path, n_bad, n_captions, ok):
    folder = tmp_path / "c"
    build(folder, [4, 4, 2], n_bad=n_bad)  # one caption an image: 10 in the metadata
    _rewrite_manifest(folder, n_captions=n_captions)
    want = {} if ok else {-1: [f"the shards' metadata hold 10 captions, the manifest's n_captions is {n_captions}"]}
    assert check_cache(folder).problems == want


def test_captions_are_compared_only_when_the_metadata_has_them(tmp_path):
    folder = tmp_path / "c"
    build(folder, [4, 2], captions=None)  # made before the captions column was written
    _rewrite_manifest(folder, n_captions=99)
    assert check_cache(folder).problems == {}


def test_captions_are_counted_across_all_shards_and_each_image_may_have_several(tmp_path):
    folder = tmp_path / "c"
    build(folder, [4, 4, 1], captions=3)
    assert Manifest.read(folder).n_captions == 27 and check_cache(folder).ok
    _rewrite_manifest(folder, n_captions=26)
    assert check_cache(folder).problems == {
        -1: ["the shards' metadata hold 27 captions, the manifest's n_captions is 26"]}


def test_captions_are_not_compared_while_a_shard_is_damaged(cache):
    folder, m = cache
    m.n_captions = 99
    _short_metadata(folder, 1)
    assert check_cache(folder, m).problems == {1: [f"{META.format(1)} has 3 rows, {IMG.format(1)} has 4"]}


# --- the report a user reads -------------------------------------------------------------------

def test_repair_hint_is_the_command_that_made_the_cache(tmp_path):
    m = Manifest(tower="timm:test_vit", fingerprint="f", preprocess={}, embed_dim=4, dtype="float16",
                 source="/d/pairs.csv", shard_size=8)
    tail = " --verify` (and the --checkpoint/--image-col/--root it was made with) re-embeds only the broken shards"
    assert repair_hint(Path("/c"), m) == ("`littune embed --data /d/pairs.csv --out /c --tower timm:test_vit "
                                          "--shard-size 8 --dtype float16" + tail)
    m.views = 3
    assert repair_hint(Path("/c"), m) == ("`littune embed --data /d/pairs.csv --out /c --tower timm:test_vit "
                                          "--shard-size 8 --dtype float16 --views 3" + tail)


def _error(problems: dict[int, list[str]]) -> str:
    report = VerifyReport(Path("/c"), "embedding", problems=problems, repair="R")
    assert not report.ok
    return str(report.error())


def test_the_error_names_the_first_problem_and_counts_the_rest():
    assert _error({2: ["a"]}) == "embedding cache /c is damaged: shard 2: a\n  repair: R"
    assert _error({2: ["a", "b"]}) == "embedding cache /c is damaged: shard 2: a (and 1 more problem)\n  repair: R"
    assert _error({3: ["c"], -1: ["whole"], 0: ["a", "b"]}) == \
        "embedding cache /c is damaged: whole (and 3 more problems)\n  repair: R"
    assert isinstance(VerifyReport(Path("/c"), "text", problems={0: ["x"]}).error(), CacheCorrupt)
    assert VerifyReport(Path("/c"), "text").ok


def test_a_damaged_cache_raises_one_error_naming_shard_file_and_repair(cache):
    folder, m = cache
    _shorter_npy(folder, 2)
    (folder / BAD.format(0)).unlink()
    message = str(check_cache(folder).error())
    assert message == (f"embedding cache {folder} is damaged: shard 0: bad/bad_0.tsv is missing (and 2 more problems)\n"
                       f"  repair: {repair_hint(folder, m)}")
