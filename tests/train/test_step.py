"""train/step.py piece by piece, fast (the mutation run of step.py reads it per mutant): latent mixup,
the step's forward for every input kind, the plain step, and the gradient cache under DDP and on a GPU
(a stand-in DDP wrapper and a stand-in CUDA generator: this machine has neither).
"""
from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import littune.train.step as step
from littune.heads import make_head
from littune.losses import create_loss
from littune.model import LiTModel
from littune.towers import create_image_tower, create_text_tower
from littune.train.step import StepForward, grad_cache_step, mix_pairs, mixup_draw, plain_step

B, CHUNK = 10, 4  # chunks 4 + 4 + 2


@pytest.fixture(scope="module")
def model() -> LiTModel:
    torch.manual_seed(0)
    image = create_image_tower("timm:test_efficientnet", pretrained=False, lock="L")
    text = create_text_tower("scratch", lock="u", width=32, depth=1, heads=2, context_length=16, dropout=0.0)
    head = make_head("mlp", image.embed_dim, 16, hidden=24)
    return LiTModel(image, text, image_head=head, embed_dim=16).eval()  # eval: no dropout, same output twice


@pytest.fixture(scope="module")
def batch(model):
    g = torch.Generator().manual_seed(1)
    return {"tokens": model.tokenize([f"photo {i} of {'a dog ' * (1 + i % 3)}" for i in range(B)]),
            "text_features": torch.randn(B, model.text.embed_dim, generator=g),
            "image_features": torch.randn(B, model.image.embed_dim, generator=g),
            "pixels": torch.randn(B, 3, 32, 32, generator=g)}


def _grads(model) -> dict[str, torch.Tensor | None]:
    return {n: (None if p.grad is None else p.grad.detach().clone()) for n, p in model.named_parameters()
            if p.requires_grad}


@contextlib.contextmanager
def _scalars(model, scale: float, bias: float, bias_grad: bool):
    """Set the logit scale (log) and bias for one test, and put them back."""
    saved = model.logit_scale.detach().clone(), model.logit_bias.detach().clone(), model.logit_bias.requires_grad
    with torch.no_grad():
        model.logit_scale.fill_(scale)
        model.logit_bias.fill_(bias)
    model.logit_bias.requires_grad_(bias_grad)
    try:
        yield
    finally:
        with torch.no_grad():
            model.logit_scale.copy_(saved[0])
            model.logit_bias.copy_(saved[1])
        model.logit_bias.requires_grad_(saved[2])
        model.zero_grad(set_to_none=True)


def test_mix_pairs_is_the_convex_mix_with_the_permuted_pair():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    lam, perm = torch.tensor([[0.25], [1.0], [0.5]]), torch.tensor([2, 0, 1])
    assert torch.equal(mix_pairs(x, lam, perm), torch.tensor([[4.0, 5.0], [3.0, 4.0], [4.0, 5.0]]))


def test_mixup_draw_is_a_pinned_function_of_seed_step_and_rank():
    lam, perm = mixup_draw(0.4, 6, seed=3, step=5)
    rng = np.random.default_rng([3, 5, 0, 0x6D6978])  # the stream a resumed run must draw again
    assert lam.shape == (6, 1) and lam.dtype == torch.float32 and lam.device.type == "cpu"
    assert torch.equal(lam[:, 0], torch.from_numpy(rng.beta(0.4, 0.4, 6)).float())
    assert torch.equal(perm, torch.from_numpy(rng.permutation(6))) and perm.device.type == "cpu"
    again = mixup_draw(0.4, 6, 3, 5, rank=0, device="cpu")
    assert torch.equal(again[0], lam) and torch.equal(again[1], perm)
    assert not torch.equal(mixup_draw(0.4, 6, 3, 5, rank=1)[0], lam)  # each rank its own draw
    assert not torch.equal(mixup_draw(0.4, 6, 3, 6)[0], lam)
    # drawn on the CPU, then moved where the batch is (the meta device stands in for a GPU here)
    lam, perm = mixup_draw(0.4, 6, 3, 5, device="meta")
    assert lam.device.type == "meta" and perm.device.type == "meta" and lam.shape == (6, 1)


def test_forward_without_mix_encodes_each_input_kind(model, batch):
    fwd = StepForward(model)
    img, txt, scale, bias = fwd(text_features=batch["text_features"], image_features=batch["image_features"])
    assert torch.equal(txt, model.encode_text_features(batch["text_features"]))
    assert torch.equal(img, model.encode_image_features(batch["image_features"]))
    assert torch.equal(scale, model.logit_scale.exp()) and torch.equal(bias, model.logit_bias)
    img, txt, _, _ = fwd(batch["tokens"], pixels=batch["pixels"])
    assert torch.equal(txt, model.encode_text(batch["tokens"]))
    assert torch.equal(img, model.encode_image(batch["pixels"]))
    txt, scale, _ = fwd(text_features=batch["text_features"], text_only=True)
    assert torch.equal(txt, model.encode_text_features(batch["text_features"]))


@pytest.mark.parametrize("text", ["tokens", "text_features"])
@pytest.mark.parametrize("image", ["pixels", "image_features"])
def test_forward_with_mix_mixes_both_sides_tower_features(model, batch, text, image):
    lam, perm = mixup_draw(0.5, B, seed=0, step=1)
    img, txt, scale, bias = StepForward(model)(**{text: batch[text], image: batch[image]}, mix=(lam, perm))
    t_feat = batch["text_features"] if text == "text_features" else model.text_features(batch["tokens"])
    i_feat = batch["image_features"] if image == "image_features" else model.image_features(batch["pixels"])
    assert torch.equal(txt, model.encode_text_features(mix_pairs(t_feat, lam, perm)))
    assert torch.equal(img, model.encode_image_features(mix_pairs(i_feat, lam, perm)))
    assert not torch.allclose(img, model.encode_image_features(i_feat), atol=1e-3)  # mixing changed the pairs
    assert torch.equal(scale, model.logit_scale.exp()) and torch.equal(bias, model.logit_bias)


def _spy_autocast(monkeypatch) -> list:
    calls, real = [], step._autocast

    def spy(enabled, device_type=None):  # None: the caller left the device to the default
        calls.append((enabled, device_type))
        return real(enabled, device_type) if device_type is not None else real(enabled)
    monkeypatch.setattr(step, "_autocast", spy)
    return calls


def test_plain_step_mixes_uses_the_bias_and_autocasts_on_the_batch_device(model, batch, monkeypatch):
    loss_fn, mix = create_loss("sigmoid"), mixup_draw(0.5, B, seed=2, step=0)
    calls = _spy_autocast(monkeypatch)
    with _scalars(model, 1.0, -3.0, bias_grad=True):
        loss = plain_step(StepForward(model), loss_fn, {"text_features": batch["text_features"]},
                          {"image_features": batch["image_features"]}, False, mix=mix)
        got = _grads(model)
        model.zero_grad(set_to_none=True)
        want = loss_fn(model.encode_image_features(mix_pairs(batch["image_features"], *mix)),
                       model.encode_text_features(mix_pairs(batch["text_features"], *mix)),
                       model.logit_scale.exp(), model.logit_bias)
        want.backward()
        ref = _grads(model)
        assert not loss.requires_grad and torch.equal(loss, want.detach())
        assert got.keys() == ref.keys() and got["logit_bias"] is not None
        for n, g in ref.items():
            assert (g is None) == (got[n] is None) and (g is None or torch.equal(got[n], g)), n
    assert calls == [(False, "cpu")]


def test_a_non_finite_loss_stops_the_step_saying_so(model, batch):
    with pytest.raises(FloatingPointError, match=r"^loss became nan$"):
        plain_step(StepForward(model), lambda *a: torch.tensor(float("nan")), {"text_features": batch["text_features"]},
                   {"image_features": batch["image_features"]}, False)


class FakeDDP(nn.Module):
    """What grad_cache_step needs of DistributedDataParallel: ``module`` and ``no_sync``. Records each
    forward with whether gradients would be synchronised after its backward."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module, self.sync, self.calls = module, True, []

    @contextlib.contextmanager
    def no_sync(self):
        self.sync = False
        try:
            yield
        finally:
            self.sync = True

    def forward(self, *args, **kwargs):
        self.calls.append((self.sync, kwargs.get("text_only", False)))
        return self.module(*args, **kwargs)


@pytest.mark.parametrize("loss_name,scale,bias", [
    ("softmax", 2.0, 0.5),  # the bias needs a gradient, but this loss does not use it
    ("sigmoid", 0.0, -1.0),  # scale + bias = 0: the unused-parameter term is exactly zero, no 0/0
])
@pytest.mark.parametrize("ddp", [False, True])
def test_grad_cache_gradients_are_the_plain_steps_and_synchronised_once(model, batch, loss_name, scale, bias, ddp):
    loss_fn = create_loss(loss_name)
    text_kw, image_kw = {"tokens": batch["tokens"]}, {"image_features": batch["image_features"]}
    with _scalars(model, scale, bias, bias_grad=True):
        want = plain_step(StepForward(model), loss_fn, text_kw, image_kw, False)
        ref = _grads(model)
        model.zero_grad(set_to_none=True)
        fwd = FakeDDP(StepForward(model)) if ddp else StepForward(model)
        loss = grad_cache_step(fwd, loss_fn, batch["tokens"], image_kw, CHUNK, False)
        got = _grads(model)
    torch.testing.assert_close(loss, want, rtol=1e-6, atol=1e-6)
    assert not loss.requires_grad
    assert any(n.startswith("text.") for n, g in ref.items() if g is not None)
    for n, g in ref.items():
        if g is None:  # only the bias, for the softmax loss: under DDP it gets an exact zero (every
            assert n == "logit_bias" and loss_name == "softmax"  # parameter must have a gradient)
            assert got[n] is None if not ddp else torch.equal(got[n], torch.zeros(()))
        else:
            assert torch.isfinite(got[n]).all(), n
            torch.testing.assert_close(got[n], g, rtol=1e-4, atol=1e-6, msg=n)
    if ddp:  # only the re-runs go through DDP; all but the last backward without synchronising
        assert fwd.calls == [(False, True), (False, True), (True, False)]


def test_grad_cache_replays_the_cuda_generator_per_chunk_on_a_gpu(model, batch, monkeypatch):
    """On a GPU dropout draws from the CUDA generator: its state is saved per chunk, replayed, and
    left where it was after the first pass; autocast is entered for the GPU."""
    got, put, counter = [], [], iter(range(100))

    def get_state():
        got.append(torch.tensor([next(counter)], dtype=torch.uint8))
        return got[-1]
    monkeypatch.setattr(torch.cuda, "get_rng_state", get_state)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s: put.append(s))
    monkeypatch.setattr(step, "_device_type", lambda tokens: "cuda")
    calls = _spy_autocast(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA is not available ... Disabling autocast"
        grad_cache_step(StepForward(model), create_loss("softmax"), batch["tokens"],
                        {"image_features": batch["image_features"]}, CHUNK, False)
    model.zero_grad(set_to_none=True)
    assert len(got) == 4  # one per chunk, then the state after the first pass
    assert [id(s) for s in put] == [id(s) for s in got]  # each chunk's state, then the one after
    assert calls == [(False, "cuda")] * 5  # texts, the loss, then each of the 3 chunks
    assert step._rng_state("cpu")[1] is None  # on the CPU, no CUDA state


def test_autocast_is_bf16_on_either_device():
    with step._autocast(True):  # the CPU by default
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert step._autocast(True, "cuda").fast_dtype == torch.bfloat16  # not float16, CUDA's default
    assert not torch.is_autocast_enabled("cpu")
