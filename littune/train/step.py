"""One training step's forward and backward: plain, or with a gradient cache for huge batches.

Gradient cache (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory
Limited Setup"): the contrastive loss couples every pair in the batch, so the batch cannot be
split into independent micro-batches. Instead:
  1. embed all texts in chunks without a graph                      z_t  (B, E), no activations kept
  2. the loss over the full batch, differentiated w.r.t. z_t        g = dL/dz_t (B, E)
     (the image side is computed with its graph: with a locked tower it is a cheap head or nothing)
  3. re-run each text chunk with its graph and back-propagate <z_t[chunk], g[chunk]>
Memory then scales with the chunk, not the batch; gradients equal the unchunked ones (up to
summation order). Dropout draws the same masks in 1 and 3: each chunk restores its RNG state.
Under DDP every backward but the last runs in ``no_sync``, so gradients are averaged once.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..model import LiTModel


def mix_pairs(x: torch.Tensor, lam: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Latent mixup (FuseMix, Vouitsis et al. 2023, arXiv 2312.10144): pair i becomes
    lam_i * pair i + (1 - lam_i) * pair perm(i); the same (lam, perm) mixes both sides, so mixed
    pairs stay positives. x (B, D), lam (B, 1), perm (B,)."""
    return lam * x + (1 - lam) * x[perm]


class StepForward(nn.Module):
    """The trainable forward as one module, so DDP sees every parameter it must average.

    Text comes as tokens (the text tower runs) or as cached features (a locked text tower); images
    as pixels or cached features. ``mix`` = (lam (B, 1), perm (B,)) mixes both sides' tower features
    before the heads.
    """

    def __init__(self, model: LiTModel):
        super().__init__()
        self.model = model

    def forward(self, tokens=None, pixels=None, image_features=None, text_features=None, text_only: bool = False,
                mix: tuple[torch.Tensor, torch.Tensor] | None = None, anchor_features=None):
        """``anchor_features`` (n, D_txt): class prompts' cached features (train/anchors.py), run through the
        text head here too (so DDP sees their gradients) and returned last."""
        out = self._pairs(tokens, pixels, image_features, text_features, text_only, mix)
        if anchor_features is None:
            return out
        return (*out, self.model.encode_text_features(anchor_features))

    def _pairs(self, tokens, pixels, image_features, text_features, text_only, mix):
        m = self.model
        scale, bias = m.logit_scale.exp(), m.logit_bias
        if mix is None:
            txt = (m.encode_text_features(text_features) if text_features is not None
                   else m.encode_text(tokens) if tokens is not None else None)
            if text_only:
                return txt, scale, bias
            img = m.encode_image(pixels) if pixels is not None else m.encode_image_features(image_features)
            return img, txt, scale, bias
        t_feat = text_features if text_features is not None else m.text_features(tokens)  # (B, D_txt)
        i_feat = m.image_features(pixels) if pixels is not None else image_features  # (B, D_img)
        txt = m.encode_text_features(mix_pairs(t_feat.float(), *mix))
        img = m.encode_image_features(mix_pairs(i_feat.float(), *mix))
        return img, txt, scale, bias


def mixup_draw(alpha: float, n: int, seed: int, step: int, rank: int = 0,
               device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(lam (n, 1) ~ Beta(alpha, alpha), perm (n,)) for this step: a function of (seed, step, rank)
    only, so a resumed run mixes exactly as an uninterrupted one."""
    rng = np.random.default_rng([seed, step, rank, 0x6D6978])  # its own stream ("mix"), not the global RNG
    lam = torch.from_numpy(rng.beta(alpha, alpha, n)).float().unsqueeze(1)
    perm = torch.from_numpy(rng.permutation(n))
    return lam.to(device), perm.to(device)


def _device_type(tokens: dict) -> str:
    return tokens["attention_mask"].device.type  # (token ids or a prefix cache's states beside it)


def _autocast(enabled: bool, device_type: str = "cpu"):
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=enabled)


def _rng_state(device_type: str):
    """The RNG states dropout draws from: the CPU's, and the GPU's when training on one."""
    return (torch.get_rng_state(), torch.cuda.get_rng_state() if device_type == "cuda" else None)


def _set_rng_state(state) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1])


def plain_step(fwd: nn.Module, loss_fn: Callable, text_kw: dict, image_kw: dict, bf16: bool,
               mix: tuple | None = None, anchors: tuple | None = None) -> torch.Tensor:
    """``text_kw``: {"tokens": ...} or {"text_features": ...}; ``image_kw``: pixels or image_features.
    ``anchors``: (Anchors, features, targets) of this step's draw: their loss is added."""
    device_type = next(iter(image_kw.values())).device.type
    extra = {"anchor_features": anchors[1]} if anchors else {}
    with _autocast(bf16, device_type):
        img, txt, scale, bias, *anc = fwd(**text_kw, **image_kw, mix=mix, **extra)
    loss = loss_fn(img.float(), txt.float(), scale.float(), bias.float())
    if anchors:
        loss = loss + anchors[0].loss(anc[0], anchors[2])
    _check(loss)
    loss.backward()
    return loss.detach()


def _slice(tokens: dict, sl: slice) -> dict:
    return {k: v[sl] for k, v in tokens.items()}


def grad_cache_step(fwd: nn.Module, loss_fn: Callable, tokens: dict, image_kw: dict, chunk: int,
                    bf16: bool) -> torch.Tensor:
    B = tokens["attention_mask"].shape[0]
    chunks = [slice(i, min(i + chunk, B)) for i in range(0, B, chunk)]
    ddp = hasattr(fwd, "no_sync")
    no_sync = fwd.no_sync if ddp else contextlib.nullcontext
    inner = getattr(fwd, "module", fwd)

    # 1. text embeddings without a graph, remembering each chunk's RNG state (dropout masks).
    states, parts = [], []
    dev = _device_type(tokens)
    with torch.no_grad(), _autocast(bf16, dev):
        for sl in chunks:
            states.append(_rng_state(dev))
            parts.append(inner(_slice(tokens, sl), text_only=True)[0].float())
    z_txt = torch.cat(parts).requires_grad_(True)  # (B, E) leaf

    # 2. full-batch loss; its gradient w.r.t. the text embeddings, the image side and the scalars.
    #    (No parameter gradients here, so the unwrapped module is used and DDP is not involved.)
    with _autocast(bf16, dev):
        img, _, scale, bias = inner(None, **image_kw)
    img, scale, bias = img.float(), scale.float(), bias.float()
    loss = loss_fn(img, z_txt, scale, bias)
    _check(loss)
    wrt = {"txt": z_txt, "img": img, "scale": scale, "bias": bias}
    wrt = {k: v for k, v in wrt.items() if v.requires_grad}
    grads = dict(zip(wrt, torch.autograd.grad(loss, list(wrt.values()), allow_unused=True)))
    g_txt, g_img = grads["txt"], grads.get("img")
    g_scale, g_bias = grads.get("scale"), grads.get("bias")

    # 3. re-run each chunk with its graph; the last backward also carries the image side and the
    #    scalars, and (under DDP) synchronises the accumulated gradients once.
    after = _rng_state(dev)
    for i, (sl, state) in enumerate(zip(chunks, states)):
        last = i == len(chunks) - 1
        _set_rng_state(state)
        ctx = contextlib.nullcontext() if last else no_sync()
        with ctx:
            with _autocast(bf16, dev):
                if last:
                    img, txt, scale, bias = fwd(_slice(tokens, sl), **image_kw)
                else:
                    txt, scale, bias = fwd(_slice(tokens, sl), text_only=True)
            surrogate = (txt.float() * g_txt[sl]).sum()
            if last:
                if g_img is not None:
                    surrogate = surrogate + (img.float() * g_img).sum()
                if g_scale is not None:
                    surrogate = surrogate + scale.float() * g_scale
                if g_bias is not None:
                    surrogate = surrogate + bias.float() * g_bias
            elif ddp:
                surrogate = surrogate + 0.0 * (scale.float() + bias.float())  # DDP: every parameter used
            surrogate.backward()
    _set_rng_state(after)
    return loss.detach()


def _check(loss: torch.Tensor) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {loss.item()}")
