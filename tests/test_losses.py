"""Contrastive losses against plain-Python loops written from the equations in losses.py."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import littune.losses as losses_mod
from littune.losses import LOSSES, SigmoidLoss, SoftmaxLoss, create_loss


def _pairs(n=6, e=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(n, e, generator=g), dim=-1)
    txt = F.normalize(torch.randn(n, e, generator=g), dim=-1)
    return img, txt


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def softmax_reference(img, txt, s):
    """L = ½ [ -1/n Σ_i log softmax_j(s·x_i·y_j)_i  -1/n Σ_j log softmax_i(s·x_i·y_j)_j ]"""
    x, y, n = img.tolist(), txt.tolist(), len(img)
    logit = [[s * _dot(x[i], y[j]) for j in range(n)] for i in range(n)]
    i2t = 0.0
    for i in range(n):
        i2t += -(logit[i][i] - math.log(sum(math.exp(logit[i][j]) for j in range(n))))
    t2i = 0.0
    for j in range(n):
        t2i += -(logit[j][j] - math.log(sum(math.exp(logit[i][j]) for i in range(n))))
    return 0.5 * (i2t / n + t2i / n)


def sigmoid_reference(img, txt, s, b):
    """L = -1/n Σ_i Σ_j log σ(z_ij (s·x_i·y_j + b)), z_ij = +1 if i == j else -1"""
    x, y, n = img.tolist(), txt.tolist(), len(img)
    total = 0.0
    for i in range(n):
        for j in range(n):
            z = 1.0 if i == j else -1.0
            total += -math.log(1.0 / (1.0 + math.exp(-z * (s * _dot(x[i], y[j]) + b))))
    return total / n


@pytest.mark.parametrize("seed,s", [(0, 10.0), (1, 1.0), (2, 30.0)])
def test_softmax_matches_reference(seed, s):
    img, txt = _pairs(seed=seed)
    got = SoftmaxLoss()(img, txt, torch.tensor(s))
    assert float(got) == pytest.approx(softmax_reference(img, txt, s), rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("seed,s,b", [(0, 10.0, -10.0), (1, 1.0, 0.0), (2, 5.0, 2.5)])
def test_sigmoid_matches_reference(seed, s, b):
    img, txt = _pairs(seed=seed)
    got = SigmoidLoss()(img, txt, torch.tensor(s), torch.tensor(b))
    assert float(got) == pytest.approx(sigmoid_reference(img, txt, s, b), rel=1e-5, abs=1e-5)


def test_sigmoid_without_bias_is_zero_bias():
    img, txt = _pairs()
    assert torch.allclose(SigmoidLoss()(img, txt, torch.tensor(3.0)), SigmoidLoss()(img, txt, torch.tensor(3.0),
                                                                                   torch.tensor(0.0)))


def test_matching_pairs_score_lower_than_shuffled():
    img, _ = _pairs()
    for loss in (SoftmaxLoss(), SigmoidLoss()):
        aligned = loss(img, img, torch.tensor(10.0), torch.tensor(-5.0))
        shuffled = loss(img, img.roll(1, dims=0), torch.tensor(10.0), torch.tensor(-5.0))
        assert aligned < shuffled


@pytest.mark.parametrize("name", ["softmax", "sigmoid"])
def test_gradients_reach_scale_bias_and_embeddings(name):
    img, txt = _pairs()
    img.requires_grad_(True)
    txt.requires_grad_(True)
    t = torch.nn.Parameter(torch.tensor(math.log(10.0)))
    b = torch.nn.Parameter(torch.tensor(-10.0))
    loss = create_loss(name)(img, txt, t.exp(), b)
    loss.backward()
    assert t.grad is not None and t.grad.abs() > 0
    assert img.grad.abs().sum() > 0 and txt.grad.abs().sum() > 0
    if name == "sigmoid":
        assert b.grad is not None and b.grad.abs() > 0
    else:
        assert b.grad is None  # the softmax loss has no bias


@pytest.mark.parametrize("cls", [SoftmaxLoss, SigmoidLoss])
def test_local_loss_single_process_equals_global(cls):
    img, txt = _pairs(n=5)
    s, b = torch.tensor(7.0), torch.tensor(-3.0)
    torch.testing.assert_close(cls(local_loss=True)(img, txt, s, b), cls(local_loss=False)(img, txt, s, b))


def _simulated_ranks(cls, img, txt, s, b, sizes, local, monkeypatch):
    """Each 'rank' owns its slice of the batch (``sizes`` rows each); gather returns the global batch."""
    per_rank, start = [], 0
    for r, size in enumerate(sizes):
        mine_img, mine_txt = img[start:start + size], txt[start:start + size]
        start += size

        def gather(x, got_sizes, mine_img=mine_img):
            assert got_sizes == list(sizes)
            return img if x is mine_img else txt

        monkeypatch.setattr(losses_mod, "local_offset", lambda sz, r=r: sum(sz[:r]))
        per_rank.append(cls(local_loss=local, gather=gather, sizes=lambda n, dev: list(sizes))(mine_img, mine_txt, s, b))
    return per_rank


@pytest.mark.parametrize("cls", [SoftmaxLoss, SigmoidLoss])
@pytest.mark.parametrize("sizes", [(4, 4), (4, 3), (1, 4, 2)])
def test_simulated_ranks_average_to_the_global_loss(cls, sizes, monkeypatch):
    """Averaged over ranks (as DDP averages gradients), the local losses (which use the rank's row
    offset and the global count) and the non-local losses equal the loss of the global batch, also
    when ranks hold different numbers of pairs (a dropped image)."""
    img, txt = _pairs(n=sum(sizes), seed=3)
    s, b = torch.tensor(6.0), torch.tensor(-4.0)
    full = cls()(img, txt, s, b)
    for local in (True, False):
        per_rank = _simulated_ranks(cls, img, txt, s, b, sizes, local, monkeypatch)
        if local:
            torch.testing.assert_close(sum(per_rank) / len(sizes), full)
            assert not torch.allclose(per_rank[0], per_rank[1])
        else:  # every rank computes the whole global loss
            for got in per_rank:
                torch.testing.assert_close(got, full)


def test_loss_registry():
    assert {e.name for e in LOSSES.list()} >= {"softmax", "sigmoid"}
    assert isinstance(create_loss("sigmoid", local_loss=True), SigmoidLoss)
    with pytest.raises(KeyError, match="Did you mean 'softmax'"):
        create_loss("softmx")


def test_ring_is_refused_for_the_softmax_loss_and_for_one_process(tmp_path):
    from littune.config import ConfigError
    from littune.train import Trainer, load_config

    with pytest.raises(ValueError, match="train.ring_loss=true .* only the sigmoid loss"):
        create_loss("softmax", ring=True)
    img, txt = _pairs()
    with pytest.raises(ValueError, match="this run has one process"):
        create_loss("sigmoid", ring=True)(img, txt, torch.tensor(5.0), torch.tensor(-2.0))
    with pytest.raises(ConfigError, match="train.ring_loss=true needs train.loss=sigmoid \\(got 'softmax'\\)"):
        Trainer(load_config(None, ["train.ring_loss=true", f"train.out_dir={tmp_path}"]))
    with pytest.raises(ConfigError, match="this run has one process: launch it with torchrun"):
        Trainer(load_config(None, ["train.ring_loss=true", "train.loss=sigmoid", f"train.out_dir={tmp_path}",
                                   f"data.train_cache={tmp_path / 'cache'}"]))
