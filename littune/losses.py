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
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import batch_sizes, gather_with_grad, local_offset
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

    def __init__(self, local_loss: bool = False,
                 gather: Callable[[torch.Tensor, list[int]], torch.Tensor] = gather_with_grad,
                 sizes: Callable[[int, torch.device], list[int]] = batch_sizes):
        super().__init__()
        self.local_loss, self.gather, self.sizes = local_loss, gather, sizes

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
    def forward(self, img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        b = self.blocks(img, txt)
        labels = b.offset + torch.arange(b.rows_img.shape[0], device=img.device)  # positives' columns
        img_to_txt = scale * b.rows_img @ b.all_txt.T  # (r, n): this process's images vs all texts
        txt_to_img = scale * b.rows_txt @ b.all_img.T  # (r, n): this process's texts vs all images
        ce = F.cross_entropy(img_to_txt, labels, reduction="sum") + F.cross_entropy(txt_to_img, labels, reduction="sum")
        return ce / (2 * b.norm)


def sigmoid_block(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None,
                  first_positive: int | None) -> torch.Tensor:
    """Σ_ij -log σ(z_ij (s·x_i·y_j + b)) over one block: img (r, E) against txt (c, E); z = +1 on the
    pairs (i, first_positive + i), -1 elsewhere (``first_positive=None``: the block holds no pair)."""
    logits = scale * img @ txt.T + (0.0 if bias is None else bias)  # (r, c)
    z = -torch.ones_like(logits)
    if first_positive is not None:
        i = torch.arange(img.shape[0], device=img.device)
        z[i, first_positive + i] = 1.0  # +1 on the positive pairs
    return -F.logsigmoid(z * logits).sum()


@LOSSES.register("sigmoid", description="pairwise sigmoid loss (SigLIP)")
class SigmoidLoss(ContrastiveLoss):
    uses_bias = True

    def forward(self, img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        b = self.blocks(img, txt)
        return sigmoid_block(b.rows_img, b.all_txt, scale, bias, b.offset) / b.norm


def create_loss(name: str, **kwargs) -> nn.Module:
    return LOSSES.create(name, **kwargs)
