"""AdamW with the usual exclusions, per-tower learning rates, and warmup + cosine.

Weight decay is off for 1-d parameters (norm scales, biases) and for the temperature and the
sigmoid bias, as in CLIP/LiT. Each tower's ``lr_mult`` scales its parameters' learning rate: the
middle ground between a locked (0) and a fully unlocked (1) tower; a multiplier of 0 freezes its
parameters outright (``freeze_zero_lr``), as big_vision's ``schedule=None`` does.

``optim.decay_convention`` says what ``weight_decay`` means:

- ``adamw``: torch's AdamW, ``w -= lr(t) * wd * w`` on every matrix (ndim >= 2): the decay scales
  with the learning rate (wd 1e-4 at lr 1e-3 is 1e-7 a step);
- ``big_vision``: big_vision's ``optax.make`` (``big_vision/optax.py``): the chain adds
  ``wd * w`` after the lr scaling and before the schedule, so ``w -= wd * schedule(t) * w``,
  independent of the peak lr and of lr multipliers, on kernels only (flax's ``.*/kernel$``:
  Linear and Conv weights; embeddings, norms, biases and the temperature are not decayed).
  AdamW decays by ``group_lr(t) * group_wd`` with ``group_lr(t) = lr * mult * schedule(t)``,
  so a group weight decay of ``wd / (lr * mult)`` gives exactly ``wd * schedule(t)``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..model import LiTModel
from ..config import ExperimentConfig

_KERNEL_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _mults(cfg: ExperimentConfig) -> dict[str, tuple[float, str]]:
    """Parameter-name prefix -> (learning-rate multiplier, the config key that sets it)."""
    o = cfg.optim
    return {"image.": (cfg.model.image.lr_mult, "model.image.lr_mult"),
            "text.": (cfg.model.text.lr_mult, "model.text.lr_mult"),
            "image_head.": (o.head_lr_mult, "optim.head_lr_mult"), "text_head.": (o.head_lr_mult, "optim.head_lr_mult"),
            "logit_scale": (o.scale_lr_mult, "optim.scale_lr_mult"),
            "logit_bias": (o.scale_lr_mult, "optim.scale_lr_mult")}


def _mult_of(name: str, mults: dict[str, tuple[float, str]]) -> tuple[float, str]:
    return next((m for prefix, m in mults.items() if name.startswith(prefix)), (1.0, ""))


def freeze_zero_lr(model: LiTModel, cfg: ExperimentConfig) -> dict[str, list[str]]:
    """Freeze (``requires_grad=False``) the trainable parameters whose multiplier is 0, so they get
    no gradient, no update, no decay and no share of the clipped norm. Returns {key: [names]}."""
    mults, frozen = _mults(cfg), {}
    for name, p in model.named_parameters():
        mult, key = _mult_of(name, mults)
        if p.requires_grad and mult == 0:
            p.requires_grad_(False)
            frozen.setdefault(key, []).append(name)
    return frozen


def kernel_names(model: nn.Module) -> set[str]:
    """Names of Linear/Conv weights: big_vision's kernels (its default ``wd_mults``)."""
    return {f"{mod_name}.weight" if mod_name else "weight" for mod_name, m in model.named_modules()
            if isinstance(m, _KERNEL_MODULES) and getattr(m, "weight", None) is not None}


def param_groups(model: LiTModel, cfg: ExperimentConfig) -> list[dict]:
    o = cfg.optim
    mults = _mults(cfg)
    big_vision = o.decay_convention == "big_vision"
    kernels = kernel_names(model) if big_vision else set()
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        mult = _mult_of(name, mults)[0]
        if big_vision:
            decay = name in kernels
        else:
            decay = p.ndim >= 2 and name not in ("logit_scale", "logit_bias")
        groups.setdefault((mult, decay), []).append(p)
    out = []
    for (mult, decay), ps in groups.items():
        wd = 0.0
        if decay and mult > 0:
            # big_vision: AdamW's lr(t) * wd_group = (lr * mult * schedule(t)) * wd / (lr * mult)
            wd = o.weight_decay / (o.lr * mult) if big_vision else o.weight_decay
        out.append({"params": ps, "lr": o.lr * mult, "lr_mult": mult, "weight_decay": wd})
    return out


def build_optimizer(model: LiTModel, cfg: ExperimentConfig) -> torch.optim.Optimizer:
    o = cfg.optim
    groups = param_groups(model, cfg)
    if not groups:
        raise ValueError("nothing to train: every parameter is locked")
    return torch.optim.AdamW(groups, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps)


def base_lr(opt: torch.optim.Optimizer) -> float:
    """The learning rate before multipliers this step (optim.lr x schedule), read off a group with
    a non-zero multiplier."""
    return next((g["lr"] / g["lr_mult"] for g in opt.param_groups if g.get("lr_mult", 1.0)), 0.0)


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
