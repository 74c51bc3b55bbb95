"""littune.distributed's collectives on 3 real gloo processes holding 2, 3 and 1 rows: exact values.

The gather with autograd returns every rank's rows in rank order, and its backward gives each rank the
sum over ranks of the gradient of its own rows; the ring step hands each rank the previous rank's rows
(three ranks, so previous and next differ); the mean and the object gather see every rank once.
"""
from __future__ import annotations

import torch

from littune import distributed

from .gloo_ranks import run_ranks

SIZES = [2, 3, 1]  # rows per rank
E = 4  # row width, unlike every row count
N = sum(SIZES)


def _rows() -> torch.Tensor:
    return torch.arange(N * E, dtype=torch.float64).reshape(N, E) + 1  # (N, E): every value distinct


def collectives_case() -> dict:
    r = distributed.rank()
    base = _rows()
    mine = base[sum(SIZES[:r]):sum(SIZES[:r + 1])]
    with torch.device("meta"):  # another default device: the count travels on the device asked for
        sizes = distributed.batch_sizes(SIZES[r], "cpu")
    x = mine.clone().requires_grad_()
    weights = (r + 1) * (base - 1)  # rank r weighs every global row by (r + 1)
    with torch.device("meta"):  # and on the rows' device, whatever the default
        gathered = distributed.gather_with_grad(x)  # the sizes gathered inside
        (gathered * weights).sum().backward()
    x2 = mine.clone().requires_grad_()
    gather_sizes, asked = distributed.batch_sizes, []
    distributed.batch_sizes = lambda *a: asked.append(a) or gather_sizes(*a)  # counts the size gathers
    try:
        gathered2 = distributed.gather_with_grad(x2, sizes)  # sizes given: none gathered again
    finally:
        distributed.batch_sizes = gather_sizes
    (gathered2 ** 2).sum().backward()
    value = torch.tensor([r + 1.0, 10.0 * r], requires_grad=True) * 1
    mean = distributed.mean_across(value)
    out = {"rank": distributed.rank(), "world": distributed.world_size(), "main": distributed.is_main(),
           "distributed": distributed.is_distributed(), "sizes": sizes, "offset": distributed.local_offset(sizes),
           "default_device_sizes": distributed.batch_sizes(SIZES[r]), "sizes_gathered_again": asked,
           "gathered": gathered.detach(), "grad": x.grad, "gathered2": gathered2.detach(), "grad2": x2.grad,
           "shifted": distributed.ring_shift(mine, SIZES[(r - 1) % 3]),
           "shifted3d": distributed.ring_shift(mine.reshape(-1, 2, 2), SIZES[(r - 1) % 3]),
           "mean": mean, "mean_grad": mean.requires_grad, "value": value.detach(),
           "objects": distributed.gather_objects({"rank": r, "rows": SIZES[r]})}
    distributed.barrier()
    return out


def test_collectives_on_three_ranks_with_unequal_rows(tmp_path):
    got = run_ranks(3, "tests.distributed.test_gloo_collectives:collectives_case", tmp_path)
    base = _rows()
    for r, g in enumerate(got):
        lo, hi = sum(SIZES[:r]), sum(SIZES[:r + 1])
        prev = (r - 1) % 3
        assert (g["rank"], g["world"], g["main"], g["distributed"]) == (r, 3, r == 0, True)
        assert g["sizes"] == g["default_device_sizes"] == SIZES and g["offset"] == lo
        assert g["sizes_gathered_again"] == []
        torch.testing.assert_close(g["gathered"], base, rtol=0, atol=0)
        torch.testing.assert_close(g["gathered2"], base, rtol=0, atol=0)
        # Σ over ranks q of (q + 1) * (row - 1): 6 * (row - 1) for this rank's rows, and 3 * 2x for x².
        torch.testing.assert_close(g["grad"], 6 * (base[lo:hi] - 1), rtol=0, atol=0)
        torch.testing.assert_close(g["grad2"], 3 * 2 * base[lo:hi], rtol=0, atol=0)
        p_lo, p_hi = sum(SIZES[:prev]), sum(SIZES[:prev + 1])
        torch.testing.assert_close(g["shifted"], base[p_lo:p_hi], rtol=0, atol=0)
        torch.testing.assert_close(g["shifted3d"], base[p_lo:p_hi].reshape(-1, 2, 2), rtol=0, atol=0)
        torch.testing.assert_close(g["mean"], torch.tensor([2.0, 10.0]), rtol=0, atol=0)
        assert not g["mean_grad"]  # for logging: detached
        torch.testing.assert_close(g["value"], torch.tensor([r + 1.0, 10.0 * r]), rtol=0, atol=0)  # not reduced in place
        assert g["objects"] == ([{"rank": q, "rows": SIZES[q]} for q in range(3)] if r == 0 else None)
