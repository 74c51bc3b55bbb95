"""Contrastive losses: softmax (CLIP / LiT) and pairwise sigmoid (SigLIP).

Both take this process's L2-normalised embeddings, gather the other processes' (``distributed``)
and score them against each other. ``local_loss=True`` computes only this process's rows (and
columns) against the global batch: the memory-lean option, exact once DDP averages gradients.
Processes may hold different numbers of pairs (a live image that failed to decode): the gather
carries each one's count, and a local loss is normalised by the global count n (times the world
size W, since DDP divides the summed gradients by W), so the result is the loss of the n pairs.

softmax (Radford et al. 2021; Zhai et al. 2022), global batch of n pairs, s = exp(t):
    L = ½ [ -1/n Σ_i log softmax_j(s·x_i·y_j)_i  -1/n Σ_j log softmax_i(s·x_i·y_j)_j ]
sigmoid (Zhai et al. 2023), z_ij = +1 if i == j else -1:
    L = -1/n Σ_i Σ_j log σ(z_ij (s·x_i·y_j + b))

Ring sigmoid (``ring=True``; SigLIP, Zhai et al. 2023, Sec. 3.3, the "chunked" implementation, as in
big_vision; open_clip's ``SigLipLoss`` exchanges neighbours the same way): the sigmoid loss splits into independent (b_p, b_q) blocks, so instead of
gathering all n texts each process keeps its images and passes text chunks around a ring of
point-to-point sends: W - 1 steps forward. The backward recomputes each block and sends every chunk
on with the gradient gathered for it so far; after W steps it is home with the gradient of every
process's loss. Memory per process: a few (b, b) blocks and (b, E) chunks, never (b, n) or (n, E).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import batch_sizes, gather_with_grad, local_offset, rank, ring_shift
from .registry import Registry

LOSSES: Registry[nn.Module] = Registry("loss")


class Blocks(NamedTuple):
    """What one process scores: ``rows_*`` (r, E) against ``all_*`` (n, E), n = global pairs;
    ``offset`` is the first row's index in the global batch; ``norm`` divides the summed row losses."""
    rows_img: torch.Tensor
    rows_txt: torch.Tensor
    all_img: torch.Tensor
    all_txt: torch.Tensor
    offset: int
    norm: float


class ContrastiveLoss(nn.Module):
    uses_bias = False  # whether the learnable logit bias enters the loss (SigLIP's does)
    ring_capable = False  # whether ``ring=True`` (chunks passed around a ring) can compute it
    name = "contrastive"

    def __init__(self, local_loss: bool = False,
                 gather: Callable[[torch.Tensor, list[int]], torch.Tensor] = gather_with_grad,
                 sizes: Callable[[int, torch.device], list[int]] = batch_sizes, ring: bool = False):
        super().__init__()
        if ring and not self.ring_capable:
            raise ValueError(f"train.ring_loss=true passes text chunks around a ring, which only the sigmoid loss "
                             f"allows (its pairs are independent); train.loss={self.name!r} normalises each row over "
                             "every text: use train.loss=sigmoid, or drop train.ring_loss")
        self.local_loss, self.gather, self.sizes, self.ring = local_loss, gather, sizes, ring

    def blocks(self, img: torch.Tensor, txt: torch.Tensor) -> Blocks:
        """Global embeddings and, for local loss, the slice of rows this process owns."""
        sizes = self.sizes(img.shape[0], img.device)  # every process's pair count, rank order
        all_img, all_txt = self.gather(img, sizes), self.gather(txt, sizes)  # (n, E), n = sum(sizes)
        n = all_img.shape[0]
        if not self.local_loss:  # every process computes the whole loss
            return Blocks(all_img, all_txt, all_img, all_txt, 0, float(n))
        # Summed over this process's rows and divided by n / W: DDP's mean over W processes is then
        # the sum over all n rows divided by n, whatever each process's share.
        return Blocks(img, txt, all_img, all_txt, local_offset(sizes), n / len(sizes))


@LOSSES.register("softmax", description="symmetric softmax contrastive loss (CLIP / LiT)")
class SoftmaxLoss(ContrastiveLoss):
    name = "softmax"

    def forward(self, img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        b = self.blocks(img, txt)
        labels = b.offset + torch.arange(b.rows_img.shape[0], device=img.device)  # positives' columns
        # scale * (x @ y.T), not (scale * x) @ y.T: with a locked image side and no image head the images
        # need no gradient, and the product's backward then skips a whole (r, n) x (n, E) matrix product
        img_to_txt = scale * (b.rows_img @ b.all_txt.T)  # (r, n): this process's images vs all texts
        if b.rows_img is b.all_img and b.rows_txt is b.all_txt:  # every row here: one (n, n) matrix
            txt_to_img = img_to_txt.T  # serves both ways, half the matrix products forward and backward
        else:
            txt_to_img = scale * (b.rows_txt @ b.all_img.T)  # (r, n): this process's texts vs all images
        ce = F.cross_entropy(img_to_txt, labels, reduction="sum") + F.cross_entropy(txt_to_img, labels, reduction="sum")
        return ce / (2 * b.norm)


def sigmoid_block(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None,
                  first_positive: int | None) -> torch.Tensor:
    """Σ_ij -log σ(z_ij (s·x_i·y_j + b)) over one block: img (r, E) against txt (c, E); z = +1 on the
    pairs (i, first_positive + i), -1 elsewhere (``first_positive=None``: the block holds no pair)."""
    logits = scale * (img @ txt.T) + (0.0 if bias is None else bias)  # (r, c); the scale after the product (SoftmaxLoss)
    z = -torch.ones_like(logits)
    if first_positive is not None:
        i = torch.arange(img.shape[0], device=img.device)
        z[i, first_positive + i] = 1.0  # +1 on the positive pairs
    return -F.logsigmoid(z * logits).sum()


class _RingSigmoid(torch.autograd.Function):
    """Σ of this process's image rows against every process's texts, texts passed around the ring.
    img (b_r, E), txt (b_r, E), scale and bias () -> the summed block losses (); ``sizes``: every b."""

    @staticmethod
    def forward(ctx, img, txt, scale, bias, sizes: list[int]):
        me, w = rank(), len(sizes)
        total, chunk = img.new_zeros(()), txt
        for step in range(w):
            owner = (me - step) % w  # whose texts ``chunk`` holds now
            total = total + sigmoid_block(img, chunk, scale, bias, 0 if owner == me else None)
            if step < w - 1:
                chunk = ring_shift(chunk, sizes[(owner - 1) % w])
        ctx.save_for_backward(img, txt, scale, bias)
        ctx.sizes = sizes
        return total

    @staticmethod
    def backward(ctx, g):
        img, txt, scale, bias = ctx.saved_tensors
        sizes, me, w, e = ctx.sizes, rank(), len(ctx.sizes), txt.shape[1]
        g_img, g_scale, g_bias = torch.zeros_like(img), torch.zeros_like(scale), torch.zeros_like(bias)
        travel = torch.cat([txt, torch.zeros_like(txt)], dim=1)  # (b, 2E): a chunk and its gradient so far
        for step in range(w):
            owner = (me - step) % w
            with torch.enable_grad():  # recompute this block: only one is alive at a time
                leaves = [t.detach().requires_grad_() for t in (img, travel[:, :e], scale, bias)]
                block = sigmoid_block(*leaves, 0 if owner == me else None)
                gi, gt, gs, gb = torch.autograd.grad(block, leaves)
            g_img, g_scale, g_bias = g_img + g * gi, g_scale + g * gs, g_bias + g * gb
            travel = torch.cat([travel[:, :e], travel[:, e:] + g * gt], dim=1)
            travel = ring_shift(travel, sizes[(owner - 1) % w])  # the W-th step brings our own chunk home
        return g_img, travel[:, e:], g_scale, g_bias, None


@LOSSES.register("sigmoid", description="pairwise sigmoid loss (SigLIP)")
class SigmoidLoss(ContrastiveLoss):
    uses_bias = True
    ring_capable = True
    name = "sigmoid"

    def forward(self, img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        if self.ring:
            sizes = self.sizes(img.shape[0], img.device)
            if len(sizes) < 2:
                raise ValueError("train.ring_loss=true passes text chunks between processes, and this run has one "
                                 "process: launch it with torchrun --nproc_per_node N (N >= 2), or drop train.ring_loss")
            bias = torch.zeros((), device=img.device, dtype=img.dtype) if bias is None else bias
            # Normalised as a local loss: DDP's mean over W processes gives the global loss.
            return _RingSigmoid.apply(img, txt, scale, bias, sizes) / (sum(sizes) / len(sizes))
        b = self.blocks(img, txt)
        return sigmoid_block(b.rows_img, b.all_txt, scale, bias, b.offset) / b.norm


def create_loss(name: str, **kwargs) -> nn.Module:
    return LOSSES.create(name, **kwargs)
