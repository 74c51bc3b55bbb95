"""Two real processes (torchrun, gloo) give the single-process loss and gradients exactly.

Guards against the classic distributed contrastive bug: gradients silently scaled by the
world size when embeddings are gathered with autograd (open_clip's --gather-with-grad without
--local-loss discussion). Every parameter's gradient is compared, for both losses, with and
without the memory-lean local loss and with the gradient cache; and with one process holding a pair
fewer than the other (a dropped image: DROP, the fourth field), against one process on the pairs left.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("ddp_worker.py")
ROOT = Path(__file__).resolve().parents[2]


CASES = ["softmax:0:0", "softmax:1:0", "sigmoid:0:0", "sigmoid:1:0", "softmax:1:3", "sigmoid:0:2"]
# Row 7 (rank 1's last) or row 1 (rank 0's) dropped: 4 + 3 or 3 + 4 pairs.
UNEQUAL = ["softmax:0:0:7", "softmax:1:0:7", "sigmoid:1:0:1", "sigmoid:0:0:7", "softmax:1:3:1", "sigmoid:1:2:7"]
# The ring sigmoid loss (text chunks passed between processes), also with the gradient cache and a dropped row.
RING = ["ring:0:0", "ring:0:0:7", "ring:0:2:1"]
# Three processes (2 + 3 + 3 rows, or 2 + 3 + 2 with row 7 dropped): the all-gather and the ring versions.
THREE = ["sigmoid:1:0", "ring:0:0", "ring:0:0:7", "sigmoid:0:0:7"]


def _run(out: Path, nproc: int, cases: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    args = [str(WORKER), str(out), *cases]
    if nproc == 1:
        cmd = [sys.executable, *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *args]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return torch.load(out)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    # The reference: one process, the whole global batch, no local loss, no gradient cache.
    one = _run(tmp / "one.pt", 1, ["softmax:0:0", "sigmoid:0:0", "softmax:0:0:7", "sigmoid:0:0:7",
                                   "softmax:0:0:1", "sigmoid:0:0:1"])
    two = _run(tmp / "two.pt", 2, CASES + UNEQUAL + RING)
    three = _run(tmp / "three.pt", 3, THREE)
    assert one["world"] == 1 and two["world"] == 2 and three["world"] == 3
    return one["results"], two["results"], three["results"]


def _reference(one: dict, case: str) -> dict:
    """One process, the same pairs (all of them), the all-gather loss without its options."""
    loss, _, _, *drop = case.split(":")
    return one[":".join(["sigmoid" if loss == "ring" else loss, "0", "0", *drop])]


def _assert_same(got: dict, ref: dict) -> None:
    torch.testing.assert_close(got["loss"], ref["loss"], rtol=1e-5, atol=1e-6)
    assert set(got["grads"]) == set(ref["grads"])
    for name, g in ref["grads"].items():
        assert g.abs().sum() > 0, name
        # Not scaled by the world size, nor by anything else: equal to the single-process gradient, up to
        # fp32 sums taken in another order. Those differ by up to ~1e-6 of the tensor's largest element
        # (an AMD EPYC: 3.2e-6 on one element of text.pos_emb, whose largest is 5.1), so the absolute
        # tolerance scales with it; a world-size scaling error is of the gradient's own size.
        largest = g.abs().max().item()
        torch.testing.assert_close(got["grads"][name], g, rtol=1e-4, atol=max(1e-6, 1e-5 * largest),
                                   msg=lambda m: f"{name} (largest |g| {largest:.3g}): {m}")


@pytest.mark.xdist_group("torchrun")
@pytest.mark.parametrize("case", CASES + UNEQUAL + RING)
def test_two_processes_match_one(runs, case):
    one, two, _ = runs
    _assert_same(two[case], _reference(one, case))


@pytest.mark.xdist_group("torchrun")
@pytest.mark.parametrize("case", THREE)
def test_three_processes_match_one(runs, case):
    one, _, three = runs
    _assert_same(three[case], _reference(one, case))


@pytest.mark.xdist_group("torchrun")
@pytest.mark.parametrize("world,ring,gathered", [(2, "ring:0:0", "sigmoid:1:0"), (2, "ring:0:0:7", "sigmoid:0:0:7"),
                                                 (3, "ring:0:0", "sigmoid:1:0"), (3, "ring:0:0:7", "sigmoid:0:0:7")])
def test_ring_equals_the_all_gather_version(runs, world, ring, gathered):
    """The same processes, the same rows: passing text chunks around a ring gives the all-gather loss."""
    _, two, three = runs
    got = (two if world == 2 else three)
    _assert_same(got[ring], got[gathered])
