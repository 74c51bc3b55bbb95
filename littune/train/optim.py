"""AdamW with the usual exclusions, per-tower learning rates, and warmup + cosine.

Weight decay is off for 1-d parameters (norm scales, biases) and for the temperature and the
sigmoid bias, as in CLIP/LiT. Each tower's ``lr_mult`` scales its parameters' learning rate: the
middle ground between a locked (0) and a fully unlocked (1) tower.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..model import LiTModel
from ..config import ExperimentConfig


def param_groups(model: LiTModel, cfg: ExperimentConfig) -> list[dict]:
    o = cfg.optim
    mults = {"image.": cfg.model.image.lr_mult, "text.": cfg.model.text.lr_mult,
             "image_head.": o.head_lr_mult, "text_head.": o.head_lr_mult,
             "logit_scale": o.scale_lr_mult, "logit_bias": o.scale_lr_mult}
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        mult = next((m for prefix, m in mults.items() if name.startswith(prefix)), 1.0)
        decay = p.ndim >= 2 and name not in ("logit_scale", "logit_bias")
        groups.setdefault((mult, decay), []).append(p)
    return [{"params": ps, "lr": o.lr * mult, "lr_mult": mult, "weight_decay": o.weight_decay if decay else 0.0}
            for (mult, decay), ps in groups.items()]


def build_optimizer(model: LiTModel, cfg: ExperimentConfig) -> torch.optim.Optimizer:
    o = cfg.optim
    groups = param_groups(model, cfg)
    if not groups:
        raise ValueError("nothing to train: every parameter is locked")
    return torch.optim.AdamW(groups, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps)


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine decay to ``min_ratio`` at ``total`` steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(opt: torch.optim.Optimizer, cfg: ExperimentConfig) -> torch.optim.lr_scheduler.LambdaLR:
    o, t = cfg.optim, cfg.train
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: lr_factor(step, o.warmup_steps, t.steps, o.min_lr_ratio))
