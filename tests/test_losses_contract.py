"""Small contracts of the losses the reference tests in test_losses.py do not pin: the registry passes
options through, the default is the global (not local) loss, and the loss keeps the inputs' dtype."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from littune.losses import SigmoidLoss, SoftmaxLoss, create_loss


def _pairs(dtype=torch.float32, n: int = 6, e: int = 8):
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(n, e, generator=g), dim=-1).to(dtype)
    txt = F.normalize(torch.randn(n, e, generator=g), dim=-1).to(dtype)
    return img, txt


@pytest.mark.parametrize("name, cls", [("softmax", SoftmaxLoss), ("sigmoid", SigmoidLoss)])
def test_create_loss_passes_options_and_the_default_is_the_global_loss(name, cls):
    gather = lambda x: x  # noqa: E731 - a stand-in for the all-gather
    loss = create_loss(name, local_loss=True, gather=gather)
    assert isinstance(loss, cls) and loss.local_loss is True and loss.gather is gather
    assert create_loss(name).local_loss is False and cls().local_loss is False


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_the_sigmoid_loss_computes_in_the_inputs_dtype(dtype):
    img, txt = _pairs(dtype)
    scale, bias = torch.tensor(10.0, dtype=dtype), torch.tensor(-10.0, dtype=dtype)
    out = SigmoidLoss()(img, txt, scale, bias)
    assert out.dtype == dtype
    # the same sum written out in that dtype: -log sigmoid(z * logits), z = +1 on the diagonal
    logits = scale * img @ txt.T + bias
    z = 2 * torch.eye(6, dtype=dtype) - 1
    assert torch.equal(out, -F.logsigmoid(z * logits).sum() / 6)
    assert SoftmaxLoss()(img, txt, scale).dtype == dtype


@pytest.mark.parametrize("cls", [SoftmaxLoss, SigmoidLoss])
@pytest.mark.parametrize("local_loss", [False, True])
def test_the_pair_count_is_asked_for_this_process_rows_on_their_device(cls, local_loss):
    img, txt = _pairs(n=5, e=8)  # 5 pairs of width 8: the count is the rows, not the width
    asked = []

    def sizes(n, device):
        asked.append((n, device))
        return [n]

    cls(local_loss=local_loss, sizes=sizes)(img, txt, torch.tensor(3.0), torch.tensor(-1.0))
    assert asked == [(5, img.device)]


@pytest.mark.parametrize("cls", [SoftmaxLoss, SigmoidLoss])
def test_the_losses_make_their_labels_on_the_inputs_device(cls):
    """On the meta device (as on a GPU) an index or label tensor left on the CPU fails the loss."""
    img, txt = (torch.empty(4, 8, device="meta") for _ in range(2))
    out = cls()(img, txt, torch.tensor(3.0, device="meta"), torch.tensor(-1.0, device="meta"))
    assert out.device.type == "meta" and out.shape == ()


def test_the_ring_refusals_say_what_to_do():
    with pytest.raises(ValueError) as e:
        create_loss("softmax", ring=True)
    assert str(e.value) == ("train.ring_loss=true passes text chunks around a ring, which only the sigmoid loss "
                            "allows (its pairs are independent); train.loss='softmax' normalises each row over "
                            "every text: use train.loss=sigmoid, or drop train.ring_loss")
    img, txt = _pairs()
    with pytest.raises(ValueError) as e:
        create_loss("sigmoid", ring=True)(img, txt, torch.tensor(5.0), torch.tensor(-2.0))
    assert str(e.value) == ("train.ring_loss=true passes text chunks between processes, and this run has one "
                            "process: launch it with torchrun --nproc_per_node N (N >= 2), or drop train.ring_loss")


@pytest.mark.parametrize("cls", [SoftmaxLoss, SigmoidLoss])
def test_the_losses_follow_the_inputs_device_not_the_default_one(cls):
    """Under another default device (torch.set_default_device('cuda') in a user's script; 'meta' here)
    every tensor the loss makes lives where the inputs do, so the value is the same."""
    img, txt = _pairs(n=5)
    scale, bias = torch.tensor(3.0), torch.tensor(-1.0)
    expected = cls()(img, txt, scale, bias)
    with torch.device("meta"):
        got = cls()(img, txt, scale, bias)
    assert got.device == img.device and torch.equal(got, expected)
