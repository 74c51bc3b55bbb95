"""A FIFO, a folder or a device listed as an image (issue 13, case 5): ``littune embed`` skips each
with its reason in the bad-input list and goes on; it used to wait on the FIFO forever."""
from __future__ import annotations

import csv
import os
import threading
import time

from littune.cache import EmbeddingCache
from littune.cli import main
from littune.data.images import BadInputLog
from tests.cache.conftest import tower_weights  # noqa: F401  (session fixture)
from tests.cache.tiny_data import TOWER, make_images

WATCHDOG_S = 60.0


def test_embed_skips_special_files_with_a_reason(tmp_path, tower_weights, capsys):  # noqa: F811
    rows = make_images(tmp_path / "images", 4)
    os.mkfifo(tmp_path / "images" / "pipe.jpg")
    (tmp_path / "images" / "folder.jpg").mkdir()
    with (tmp_path / "data.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption"])
        w.writerows([(f"images/{name}", cap) for name, cap in rows])
        w.writerows([("images/pipe.jpg", "a pipe"), ("images/folder.jpg", "a folder"), ("/dev/null", "a device")])

    def unblock() -> None:  # should the read wait on the FIFO (the old behaviour), release it to fail the test
        fd = os.open(tmp_path / "images" / "pipe.jpg", os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)

    watchdog = threading.Timer(WATCHDOG_S, unblock)
    watchdog.start()
    started = time.monotonic()
    try:
        code = main(["embed", "--data", str(tmp_path / "data.csv"), "--out", str(tmp_path / "cache"), "--tower", TOWER,
                     "--checkpoint", str(tower_weights), "--workers", "0", "--no-progress"])
    finally:
        watchdog.cancel()
    assert time.monotonic() - started < WATCHDOG_S
    assert code == 0
    assert "embedded 4 of 7 images" in capsys.readouterr().out
    bad = {row.path: (row.reason, row.detail) for row in BadInputLog.read(tmp_path / "cache" / "bad_inputs.tsv")}
    assert {p: r for p, (r, _) in bad.items()} == {str(tmp_path / "images" / "pipe.jpg"): "not a regular file",
                                                   str(tmp_path / "images" / "folder.jpg"): "not a regular file",
                                                   "/dev/null": "not a regular file"}
    assert sorted(d.split("(")[-1] for _, d in bad.values()) == ["a FIFO)", "a character device)", "a directory)"]
    assert len(EmbeddingCache(tmp_path / "cache")) == 4
