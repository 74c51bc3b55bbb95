"""The range of every numeric config key, declared once; ``validate`` and the CLI check against it.

A number is refused unless finite and within [low, high] (an end given as ("open", x) excludes x),
with one line naming the key and what it accepts. Every int or float field of the experiment
config's dataclasses has an entry here, and a finite upper end: tests/test_option_ranges.py walks
the dataclasses and fails for a new numeric key without one. Upper ends are far above any real
use; they stop a typo (an extra three zeros) from allocating or looping for ever.
"""
from __future__ import annotations

import math
from typing import Any, Tuple, Union

from .loader import ConfigError

Bound = Union[float, Tuple[str, float], None]
BIG = 10**9  # steps, intervals: more than any run takes
WIDE = 65536  # widths, dimensions, batch sizes of one forward
RANGES: dict[str, tuple[Bound, Bound]] = {
    "model.init_temperature": (("open", 0.0), 1e6), "model.init_bias": (-1e6, 1e6),
    "model.embed_dim": (1, WIDE),
    "model.image.crop_pct": (("open", 0.0), 1.0),
    "model.image.lr_mult": (0.0, 1e6), "model.text.lr_mult": (0.0, 1e6),
    "model.image.locked_blocks": (0, 10_000), "model.text.locked_blocks": (0, 10_000),
    "model.image.head_hidden": (0, WIDE), "model.text.head_hidden": (0, WIDE),  # 0: open_clip's default width
    "model.image.head_depth": (1, 64), "model.text.head_depth": (1, 64),
    "model.image.head_dropout": (0.0, ("open", 1.0)), "model.text.head_dropout": (0.0, ("open", 1.0)),
    "model.text.dropout": (0.0, ("open", 1.0)), "model.text.context_length": (1, 8192),
    "model.text.lora_rank": (1, 4096), "model.text.lora_alpha": (("open", 0.0), 1e6),
    "model.text.lora_dropout": (0.0, ("open", 1.0)), "model.text.prefix_cache.k": (0, 10_000),
    "model.text.vocab_size": (64, 10_000_000), "model.text.width": (1, WIDE), "model.text.depth": (1, 1024),
    "model.text.heads": (1, 1024), "model.text.mlp_ratio": (("open", 0.0), 64.0),
    "optim.lr": (("open", 0.0), 1e3), "optim.weight_decay": (0.0, 1e3),
    "optim.beta1": (0.0, ("open", 1.0)), "optim.beta2": (0.0, ("open", 1.0)), "optim.eps": (("open", 0.0), 1.0),
    "optim.warmup_steps": (0, BIG), "optim.min_lr_ratio": (0.0, 1.0), "optim.grad_clip": (0.0, 1e6),
    "optim.scale_lr_mult": (0.0, 1e6), "optim.head_lr_mult": (0.0, 1e6),
    "train.steps": (1, BIG), "train.batch_size": (2, 2**30),  # a contrastive batch needs negatives
    "train.seed": (0, 2**32 - 1),  # numpy's seed range
    "train.log_every": (1, BIG), "train.eval_every": (0, BIG), "train.ckpt_every": (0, BIG),
    "train.keep_checkpoints": (0, 10_000), "train.threads": (0, 4096), "train.grad_cache_chunk": (0, 2**30),
    "train.interpolate_alpha": (0.0, 1.0), "train.mixup": (0.0, 1e6),
    "train.anchors.weight": (0.0, 1e6), "train.anchors.classes": (2, 1_000_000),
    "train.anchors.scale": (("open", 0.0), 1e6),
    "train.collective_timeout_s": (("open", 0.0), 7 * 86400.0),
    "data.views": (0, 64), "data.num_workers": (0, 256), "data.stream_buffer": (1, 10_000_000),
    "data.embed_batch_size": (1, WIDE), "data.shuffle_buffer": (0, 1_000_000),  # 0: off (uniform sampling)
}


def check_key(cfg: Any, key: str) -> None:
    """Refuse a non-finite or out-of-range number at dotted ``key`` of ``cfg``, naming the key."""
    low, high = RANGES[key]
    value = cfg
    for part in key.split("."):
        value = getattr(value, part)
    if value is None:  # optional (e.g. model.embed_dim: the image tower's size)
        return
    lo_open, lo = (True, low[1]) if isinstance(low, tuple) else (False, low)
    hi_open, hi = (True, high[1]) if isinstance(high, tuple) else (False, high)
    ok = math.isfinite(value) and (lo is None or (value > lo if lo_open else value >= lo)) and (
        hi is None or (value < hi if hi_open else value <= hi))
    if not ok:
        want = " and ".join(w for w in (
            None if lo is None else f"{'>' if lo_open else '>='} {lo:g}",
            None if hi is None else f"{'<' if hi_open else '<='} {hi:g}") if w)
        raise ConfigError(f"{key}={value} is not allowed: it must be a finite number{' ' + want if want else ''}")


def check_ranges(cfg: Any) -> None:
    """Every declared key of an experiment config, in the order above."""
    for key in RANGES:
        check_key(cfg, key)
