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
