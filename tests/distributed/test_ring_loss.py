"""The ring sigmoid loss on 2 and 3 real gloo processes equals the loss written from its equation.

Each rank's loss is its own rows against every text, divided by n / W (DDP's mean over ranks is then
the global loss); each rank's gradients are those of that sum: images and scale and bias from its own
loss, texts from every rank's loss (the chunk travels home with them). Ranks hold different numbers of
pairs, and three ranks tell the ring's direction apart (with two, next and previous are one rank).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import littune.losses as losses_mod
from littune import distributed
from littune.losses import SigmoidLoss

from .gloo_ranks import run_ranks

SIZES = {2: [3, 2], 3: [2, 3, 1]}  # pairs per rank
E = 5  # embedding width, unlike every batch size
SCALE, BIAS = 4.0, -1.5


def _pairs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(n, E, generator=g, dtype=torch.float64), dim=-1)
    txt = F.normalize(torch.randn(n, E, generator=g, dtype=torch.float64), dim=-1)
    return img, txt


def ring_case() -> dict:
    """One rank: the ring loss of its pairs, forward and backward, with the bias and without."""
    r, w = distributed.rank(), distributed.world_size()
    sizes = SIZES[w]
    img, txt = _pairs(sum(sizes))
    mine = slice(sum(sizes[:r]), sum(sizes[:r + 1]))
    out, shifts = {}, []
    ring_shift = losses_mod.ring_shift
    losses_mod.ring_shift = lambda x, rows: (shifts.append(rows), ring_shift(x, rows))[1]  # counts the steps
    try:
        for with_bias in (True, False):
            out[with_bias] = _one_loss(img[mine], txt[mine], with_bias, shifts)
    finally:
        losses_mod.ring_shift = ring_shift
    return out


def _one_loss(img: torch.Tensor, txt: torch.Tensor, with_bias: bool, shifts: list[int]) -> dict:
    """Forward and backward of one ring loss; the rows each ring step received, in order."""
    x, y = img.clone().requires_grad_(), txt.clone().requires_grad_()
    s = torch.tensor(SCALE, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(BIAS, dtype=torch.float64, requires_grad=True)
    asked = []

    def sizes_of(n, device):
        asked.append((n, str(device)))
        return distributed.batch_sizes(n, device)

    with torch.device("meta"):  # another default device: every tensor made must follow the inputs
        loss = SigmoidLoss(ring=True, sizes=sizes_of)(x, y, s, b if with_bias else None)
        forward_shifts = list(shifts)
        loss.backward()
    backward_shifts = shifts[len(forward_shifts):]
    shifts.clear()
    return {"loss": loss.detach(), "img": x.grad, "txt": y.grad, "scale": s.grad, "bias": b.grad,
            "asked": asked, "forward_shifts": forward_shifts, "backward_shifts": backward_shifts}


def _reference(w: int, with_bias: bool) -> list[dict]:
    """Per rank: L_r = Σ_{i in r} Σ_j -log σ(z_ij (s·x_i·y_j + b)) / (n / W) and the gradients DDP sees."""
    sizes = SIZES[w]
    n = sum(sizes)
    img, txt = (t.clone().requires_grad_() for t in _pairs(n))
    s = torch.tensor(SCALE, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(BIAS if with_bias else 0.0, dtype=torch.float64, requires_grad=True)
    z = 2 * torch.eye(n, dtype=torch.float64) - 1
    rows = -F.logsigmoid(z * (s * img @ txt.T + b)).sum(dim=1)  # (n,)
    bounds = [sum(sizes[:r]) for r in range(w + 1)]
    losses = [rows[bounds[r]:bounds[r + 1]].sum() / (n / w) for r in range(w)]
    g_img, g_txt = torch.autograd.grad(sum(losses), (img, txt), retain_graph=True)
    out = []
    for r, loss in enumerate(losses):
        g_s, g_b = torch.autograd.grad(loss, (s, b), retain_graph=True)
        mine = slice(bounds[r], bounds[r + 1])
        out.append({"loss": loss.detach(), "img": g_img[mine], "txt": g_txt[mine], "scale": g_s, "bias": g_b})
    return out


@pytest.mark.parametrize("w", [2, 3], ids=["2 ranks", "3 ranks"])
def test_ring_loss_and_gradients_equal_the_equation(w, tmp_path):
    # One test per launch checks everything the launch computed (mutation testing runs only the tests
    # that reached a mutant, so no other test may own part of a launch's results).
    got = run_ranks(w, "tests.distributed.test_ring_loss:ring_case", tmp_path)
    img, txt = _pairs(sum(SIZES[w]))
    for with_bias in (True, False):
        for r, (rank_got, ref) in enumerate(zip(got, _reference(w, with_bias))):
            mine = rank_got[with_bias]
            assert mine["asked"] == [(SIZES[w][r], "cpu")], r  # this rank's pair count, on the rows' device
            # W - 1 steps forward, W back (the last brings the chunk home), each receiving the chunk of
            # the rank one further back: rank r first gets rank r - 1's rows, then r - 2's, ...
            behind = [SIZES[w][(r - k) % w] for k in range(1, w + 1)]
            assert (mine["forward_shifts"], mine["backward_shifts"]) == (behind[:-1], behind), r
            for key in ("loss", "img", "txt", "scale"):
                torch.testing.assert_close(mine[key], ref[key], rtol=1e-9, atol=1e-12, msg=f"rank {r}: {key}")
            if with_bias:
                torch.testing.assert_close(mine["bias"], ref["bias"], rtol=1e-9, atol=1e-12, msg=f"rank {r}: bias")
            else:
                assert mine["bias"] is None  # no bias given: none is learnt
        # DDP's mean of the ranks' losses is the loss of the global batch.
        bias = torch.tensor(BIAS, dtype=torch.float64) if with_bias else None
        full = SigmoidLoss()(img, txt, torch.tensor(SCALE, dtype=torch.float64), bias)
        torch.testing.assert_close(sum(g[with_bias]["loss"] for g in got) / w, full, rtol=1e-9, atol=1e-12)
