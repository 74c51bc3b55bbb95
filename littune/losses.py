"""Contrastive losses: softmax (CLIP / LiT) and pairwise sigmoid (SigLIP).

Both take this process's L2-normalised embeddings, gather the other processes' (``distributed``)
and score them against each other. ``local_loss=True`` computes only this process's rows (and
columns) against the global batch: the memory-lean option, exact once DDP averages gradients.

softmax (Radford et al. 2021; Zhai et al. 2022), global batch of n pairs, s = exp(t):
    L = ½ [ -1/n Σ_i log softmax_j(s·x_i·y_j)_i  -1/n Σ_j log softmax_i(s·x_i·y_j)_j ]
sigmoid (Zhai et al. 2023), z_ij = +1 if i == j else -1:
    L = -1/n Σ_i Σ_j log σ(z_ij (s·x_i·y_j + b))
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import gather_with_grad, rank
from .registry import Registry

LOSSES: Registry[nn.Module] = Registry("loss")


class ContrastiveLoss(nn.Module):
    uses_bias = False  # whether the learnable logit bias enters the loss (SigLIP's does)

    def __init__(self, local_loss: bool = False, gather: Callable[[torch.Tensor], torch.Tensor] = gather_with_grad):
        super().__init__()
        self.local_loss, self.gather = local_loss, gather

    def blocks(self, img: torch.Tensor, txt: torch.Tensor):
        """Global embeddings and, for local loss, the slice of rows this process owns."""
        all_img, all_txt = self.gather(img), self.gather(txt)  # (N, E) with N = world * b
        if not self.local_loss:
            return all_img, all_txt, all_img, all_txt, 0
        return img, txt, all_img, all_txt, rank() * img.shape[0]


@LOSSES.register("softmax", description="symmetric softmax contrastive loss (CLIP / LiT)")
class SoftmaxLoss(ContrastiveLoss):
    def forward(self, img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        row_img, row_txt, all_img, all_txt, offset = self.blocks(img, txt)
        labels = offset + torch.arange(row_img.shape[0], device=img.device)  # positives' columns
        img_to_txt = scale * row_img @ all_txt.T  # (b, N): this process's images vs all texts
        txt_to_img = scale * row_txt @ all_img.T  # (b, N): this process's texts vs all images
        return (F.cross_entropy(img_to_txt, labels) + F.cross_entropy(txt_to_img, labels)) / 2


@LOSSES.register("sigmoid", description="pairwise sigmoid loss (SigLIP)")
class SigmoidLoss(ContrastiveLoss):
    uses_bias = True

    def forward(self, img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        row_img, _, _, all_txt, offset = self.blocks(img, txt)
        b, n = row_img.shape[0], all_txt.shape[0]
        logits = scale * row_img @ all_txt.T + (0.0 if bias is None else bias)  # (b, N)
        z = -torch.ones(b, n, device=img.device, dtype=logits.dtype)
        z[torch.arange(b), offset + torch.arange(b)] = 1.0  # +1 on the positive pairs
        # Normalised by the rows this process owns: averaging over processes gives the global loss.
        return -F.logsigmoid(z * logits).sum() / b


def create_loss(name: str, **kwargs) -> nn.Module:
    return LOSSES.create(name, **kwargs)
