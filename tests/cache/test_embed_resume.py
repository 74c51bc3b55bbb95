"""`littune embed` killed in the middle and run again ends with exactly the files of an uninterrupted run."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from littune.cache import CacheMismatch, EmbedOptions, Manifest, auto_shard_size, embed
from littune.cli import main
from littune.infer.options import IndexOptions

from .tiny_data import (TOWER, cli_command, cli_env, files_of, killed_at_the_end, load_tower, make_dataset,
                        one_thread, wait_for_file)

N_IMAGES, SHARD = 60, 8  # 8 shards, the last one of 4 images


@pytest.mark.xdist_group("subprocess")
def test_resume_after_kill_equals_uninterrupted_run(tmp_path, tower_weights, capsys):
    csv = make_dataset(tmp_path / "data", N_IMAGES)

    def args(out: Path) -> list[str]:
        return ["embed", "--data", str(csv), "--out", str(out), "--tower", TOWER, "--checkpoint", str(tower_weights),
                "--shard-size", str(SHARD), "--batch-size", "4", "--workers", "0", "--views", "1", "--no-progress",
                "--json"]

    full, resumed = tmp_path / "full", tmp_path / "resumed"
    # The real command in a subprocess, slowed to 0.5 s a shard, killed once its first shard is written.
    victim = subprocess.Popen(cli_command(*args(resumed)), env=cli_env(sleep=0.5), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    with killed_at_the_end(victim):
        with one_thread():  # meanwhile, the uninterrupted run, here
            assert main(args(full)) == 0
        wait_for_file(resumed / "img_emb" / "img_emb_0.npy", victim, "shard")

    # The killed run left an unfinished cache: a manifest saying so, some shards missing.
    m = Manifest.read(resumed)
    assert m.complete is False
    done = sorted(p.name for p in (resumed / "img_emb").glob("img_emb_*.npy"))
    assert "img_emb_0.npy" in done and len(done) < N_IMAGES // SHARD + 1

    capsys.readouterr()
    with one_thread():  # the same command again
        assert main(args(resumed)) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[0])
    assert report["count"] == N_IMAGES and report["n_bad"] == 0

    a, b = files_of(full), files_of(resumed)
    assert sorted(a) == sorted(b)
    assert not [name for name in a if name.endswith(".tmp")]
    assert len([n for n in a if n.startswith("img_emb_views/")]) == 8
    for name in a:
        if name.endswith(".npy"):
            np.testing.assert_array_equal(np.load(full / name), np.load(resumed / name), err_msg=name)
        assert a[name] == b[name], f"{name} differs between the uninterrupted and the resumed run"
    final = json.loads(a["manifest.json"])
    assert final["complete"] is True and final["count"] == N_IMAGES and len(final["shards"]) == 8


def test_resume_into_a_cache_made_with_other_settings_is_refused(tmp_path, tower, other_tower_weights):
    csv = make_dataset(tmp_path / "data", 20)
    out = tmp_path / "cache"
    opts = dict(shard_size=8, batch_size=8, num_workers=0, progress=False, dtype="float16")
    embed(str(csv), tower, out, EmbedOptions(**opts))
    before = (out / "manifest.json").read_text()

    cases = {"dtype": (tower, {"dtype": "float32"}), "shard_size": (tower, {"shard_size": 4}),
             "views": (tower, {"views": 1}), "fingerprint": (load_tower(other_tower_weights), {})}
    for field, (t, change) in cases.items():
        with pytest.raises(CacheMismatch, match=field) as e:
            embed(str(csv), t, out, EmbedOptions(**{**opts, **change}))
        assert str(out) in str(e.value)
    assert (out / "manifest.json").read_text() == before  # the refused runs changed nothing

    # Another data set into the same folder: refused too (source and n_items differ).
    other_csv = make_dataset(tmp_path / "data2", 12)
    with pytest.raises(CacheMismatch, match="n_items"):
        embed(str(other_csv), tower, out, EmbedOptions(**opts))

    # The same settings again: fine, and nothing is re-embedded.
    stamp = (out / "img_emb" / "img_emb_0.npy").stat().st_mtime_ns
    embed(str(csv), tower, out, EmbedOptions(**opts))
    assert (out / "img_emb" / "img_emb_0.npy").stat().st_mtime_ns == stamp


def test_default_shard_size_suits_the_data(tmp_path, tower):
    """About n/8 images a shard, 250 to 4,096: a 1,000-image index is 4 shards, a kill loses a minute at most."""
    assert [auto_shard_size(n) for n in (1, 1000, 6000, 32_768, 10**6)] == [250, 250, 750, 4096, 4096]
    assert EmbedOptions().shard_size is None and IndexOptions().shard_size is None
    csv = make_dataset(tmp_path / "data", 20)
    opts = dict(batch_size=8, num_workers=0, progress=False)
    m = embed(str(csv), tower, tmp_path / "auto", EmbedOptions(**opts))
    assert (m.shard_size, m.n_shards, m.count) == (250, 1, 20)
    # A cache made with another shard size (the old default, or --shard-size) keeps its own.
    out = tmp_path / "eight"
    embed(str(csv), tower, out, EmbedOptions(shard_size=8, **opts))
    (out / "img_emb" / "img_emb_2.npy").unlink()  # as a kill leaves it
    m = embed(str(csv), tower, out, EmbedOptions(**opts))
    assert (m.shard_size, m.n_shards, m.count, m.complete) == (8, 3, 20, True)


def test_cli_rerun_on_a_complete_cache_says_already_complete(tmp_path, tower_weights, capsys):
    csv = make_dataset(tmp_path / "data", 12)
    args = ["embed", "--data", str(csv), "--out", str(tmp_path / "c"), "--tower", TOWER, "--checkpoint",
            str(tower_weights), "--shard-size", "8", "--workers", "0", "--engine", "torch"]
    assert main(args) == 0
    first = capsys.readouterr()
    assert "embed timm:test_vit" in first.err and "already complete" not in first.err  # a bar the first time
    assert main(args) == 0
    again = capsys.readouterr()
    assert again.err == f"{tmp_path / 'c'}: already complete (12 images)\n"  # no empty bar
    assert again.out.startswith("embedded 12 of 12 images")
    assert main(args + ["--no-progress"]) == 0 and capsys.readouterr().err == ""
