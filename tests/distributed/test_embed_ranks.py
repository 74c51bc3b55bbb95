"""`littune embed` under a 2-process torchrun: shard k on rank k % 2, every image once, the same
files as one process, and a run whose rank 1 was killed, resumed shard by shard, ends with the
uninterrupted files."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from littune.cache import Manifest
from littune.cache.items import load_items
from littune.cli import main

from tests.cache.conftest import tower_weights  # noqa: F401  (fixture)
from tests.cache.tiny_data import _BOOT, TOWER, cli_env, make_dataset

N_IMAGES, SHARD = 40, 7  # 6 shards (the last of 5 images): rank 0 embeds 0, 2, 4 and rank 1 embeds 1, 3, 5
N_SHARDS = -(-N_IMAGES // SHARD)


def torchrun(boot: Path, args: list[str], sleep: float = 0.0) -> subprocess.Popen:
    """The real CLI under torchrun, in a session of its own so the whole process tree can be killed."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(boot), *args]
    return subprocess.Popen(cmd, env=cli_env(sleep=sleep), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        kill_tree(proc)
    assert proc.returncode == 0, err[-3000:]
    return out


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL torchrun and every process under it. Its workers run in sessions of their own (torch's
    launcher starts each with start_new_session), so killing torchrun's group alone would leave them
    running on, orphaned, to finish the job: the test would then resume a run that was never stopped."""
    import psutil

    try:
        workers = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        workers = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for w in workers:
        with contextlib.suppress(psutil.NoSuchProcess):
            w.kill()
    psutil.wait_procs(workers, timeout=30)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)


def kill_rank(launcher: subprocess.Popen, rank: int) -> None:
    """SIGKILL the one worker of ``launcher`` that runs as ``rank`` (its launcher and the others live on)."""
    import psutil

    for p in psutil.Process(launcher.pid).children(recursive=True):
        try:
            if p.environ().get("RANK") == str(rank) and "torch.distributed.run" not in " ".join(p.cmdline()):
                p.kill()
                return
        except psutil.NoSuchProcess:
            continue
    raise AssertionError(f"no worker of rank {rank} found")


class Launched:
    """A torchrun command started now and waited for later (so tests can overlap runs)."""

    def __init__(self, proc: subprocess.Popen, out: Path):
        self.proc, self.out, self.stdout = proc, out, None

    def result(self) -> Path:
        if self.stdout is None:
            self.stdout = finish(self.proc)
        return self.out

    def stop(self) -> None:
        kill_tree(self.proc)


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tower_weights):  # noqa: F811
    root = tmp_path_factory.mktemp("embed_ranks")
    csv = make_dataset(root / "data", N_IMAGES)
    boot = root / "boot.py"
    boot.write_text(_BOOT)

    def args(out: Path) -> list[str]:
        return ["embed", "--data", str(csv), "--out", str(out), "--tower", TOWER, "--checkpoint", str(tower_weights),
                "--shard-size", str(SHARD), "--batch-size", "4", "--workers", "0", "--no-progress", "--json"]

    return root, csv, boot, args


@pytest.fixture(scope="module")
def one(setup) -> Path:
    """One process, in this one, with one thread (like the torchrun workers: OMP_NUM_THREADS=1)."""
    root, _, _, args = setup
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(args(root / "one")) == 0
    finally:
        torch.set_num_threads(before)
    return root / "one"


@pytest.fixture(scope="module")
def two(setup):
    """The uninterrupted 2-process run, started at once; ``.result()`` waits for it."""
    root, _, boot, args = setup
    run = Launched(torchrun(boot, args(root / "two")), root / "two")
    yield run
    run.stop()


def _two(two: Launched) -> Path:
    out = two.result()
    report = json.loads(two.stdout.splitlines()[0])  # printed once, by rank 0
    assert report["count"] == N_IMAGES and len(two.stdout.splitlines()) == 1
    return out


@pytest.mark.xdist_group("torchrun")
def test_two_ranks_embed_every_image_once_like_one_process(setup, two, one):  # two starts first, runs beside one
    _, csv, _, _ = setup
    two = _two(two)
    items, _ = load_items(str(csv))
    keys = [k for s in range(N_SHARDS) for k in pq.read_table(two / "metadata" / f"metadata_{s}.parquet")
            .column("key").to_pylist()]
    assert len(keys) == len(set(keys)) == N_IMAGES  # no duplicates
    assert set(keys) == {it.key for it in items}  # no losses

    m1, m2 = Manifest.read(one), Manifest.read(two)
    assert m2.complete and m2.world_size == 2 and m1.world_size == 1
    assert m2.count == N_IMAGES and len(m2.shards) == N_SHARDS
    assert [s["count"] for s in m2.shards] == [SHARD] * (N_SHARDS - 1) + [N_IMAGES - SHARD * (N_SHARDS - 1)]
    assert [s["start"] for s in m2.shards] == [SHARD * k for k in range(N_SHARDS)]
    d1, d2 = json.loads((one / "manifest.json").read_text()), json.loads((two / "manifest.json").read_text())
    assert {**d1, "world_size": 2} == d2

    a, b = files(one), files(two)
    assert sorted(a) == sorted(b)
    assert not [n for n in b if n.endswith(".tmp")]
    for name in a:
        if name.endswith(".npy"):  # same embeddings, whichever process made the shard
            np.testing.assert_array_equal(np.load(one / name), np.load(two / name), err_msg=name)
        if name != "manifest.json":
            assert a[name] == b[name], f"{name} differs between 1 and 2 processes"


@pytest.mark.xdist_group("torchrun")
def test_two_ranks_killed_and_resumed_equal_the_uninterrupted_run(setup, two):
    root, _, boot, args = setup
    resumed = root / "resumed"
    # The 2-process run, slowed to 1 s a shard; after its first shard rank 1 alone is killed, and
    # torchrun stops rank 0 and fails; meanwhile the uninterrupted one (the fixture) runs beside it.
    victim = torchrun(boot, args(resumed), sleep=1.0)
    try:
        deadline = time.monotonic() + 300  # generous: the suite's other worker shares the two cores
        while not list((resumed / "img_emb").glob("img_emb_*.npy")):
            assert victim.poll() is None, f"embed ended before its first shard: {victim.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "no shard within 300 s"
            time.sleep(0.02)
        kill_rank(victim, 1)
        assert victim.wait(timeout=120) != 0  # the launcher notices, stops rank 0 and fails
    finally:
        kill_tree(victim)
        victim.stdout.close()
        victim.stderr.close()

    m = Manifest.read(resumed)
    assert m.complete is False and m.world_size == 2
    done = sorted(p.name for p in (resumed / "img_emb").glob("img_emb_*.npy"))
    assert 1 <= len(done) < N_SHARDS
    stamps = {n: (resumed / "img_emb" / n).stat().st_mtime_ns for n in done}

    finish(torchrun(boot, args(resumed)))  # the same command again
    two = _two(two)
    assert {n: (resumed / "img_emb" / n).stat().st_mtime_ns for n in done} == stamps  # kept, not redone
    a, b = files(two), files(resumed)
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name] == b[name], f"{name} differs between the uninterrupted and the resumed run"
