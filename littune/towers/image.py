"""Image towers: a registry of pre-trained vision models, each giving a pooled pre-logits embedding.

``create_image_tower("timm:vit_base_patch16_224")``, ``create_image_tower("hf:facebook/dinov2-small")``
or the offline default ``create_image_tower("efficientnet_lite0")``. Every tower knows its
embedding size and its own preprocessing (from the model's config), and can be locked.

Pooling (``model.image.pooling``): ``default`` is each model's own pre-logits feature; ``cls_mean``
(ViTs with a class token) concatenates the final class token with the mean of the final patch
tokens, as dino.txt does (Jose et al., arXiv 2412.16334), doubling the embedding size.
A tower's name carries a non-default pooling (``timm:vit_small_patch16_224+cls_mean``), so caches
and runs made with one pooling are never taken for the other.
"""
from __future__ import annotations

from typing import Any

import torch

from .catalog import IMAGE_TOWERS, list_image_towers  # noqa: F401  (re-exported)
from .lock import Lockable, fingerprint
from .preprocess import Preprocess

POOLINGS = {
    "default": "the model's own pooled pre-logits feature",
    "cls_mean": "concat(final class token, mean of final patch tokens): 2x the width (dino.txt)",
}


def check_pooling(pooling: str, tower: str, has_class_token: bool) -> str:
    """Refuse an unknown pooling, or ``cls_mean`` on a tower without a class token, naming the key."""
    if pooling not in POOLINGS:
        raise ValueError(f"model.image.pooling='{pooling}' is not a pooling; use one of "
                         + ", ".join(f"'{k}' ({v})" for k, v in POOLINGS.items()))
    if pooling == "cls_mean" and not has_class_token:
        raise ValueError(f"model.image.pooling='cls_mean' needs a ViT with a class token; {tower} has none "
                         "(use pooling 'default')")
    return pooling


def pooled_name(name: str, pooling: str) -> str:
    """The tower's name with a non-default pooling appended: what caches and manifests record."""
    return name if pooling == "default" else f"{name}+{pooling}"


def cls_mean(tokens: torch.Tensor, prefix: int) -> torch.Tensor:
    """(B, T, D) final tokens, class token first and ``prefix`` non-patch tokens (class, registers,
    distillation) before the patches -> (B, 2D) = concat(class token, mean of the patch tokens)."""
    return torch.cat([tokens[:, 0], tokens[:, prefix:].mean(dim=1)], dim=-1)


class ImageTower(Lockable):
    """Base class: ``forward(pixels (B,3,H,W)) -> (B, embed_dim)`` pooled pre-logits features."""

    name: str
    embed_dim: int
    preprocess: Preprocess
    pooling: str = "default"
    cache_precision: str = "fp32"  # what its embedding caches are computed in: fp32 | bf16 (towers/engine.py)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        with self.grad_context():
            return self.features(pixels)

    def fingerprint(self) -> str:
        return fingerprint(self)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "embed_dim": self.embed_dim, "pooling": self.pooling,
                "preprocess": self.preprocess.to_dict(), **self.lock_summary()}


def create_image_tower(name: str, *, pretrained: bool = True, checkpoint: str | None = None,
                       lock: str = "L", locked_blocks: int = 0, allow_partial: bool = False,
                       pooling: str = "default", **kwargs: Any) -> ImageTower:
    """Build a registered image tower and apply its lock setting.

    ``pretrained`` loads the source's own weights (timm hub, HF folder/hub, packaged file);
    ``checkpoint`` loads a local weights file instead and fails on keys that do not fit
    unless ``allow_partial``. ``lock`` is 'L', 'U' or 'u' (see ``lock.LOCK_MODES``); ``pooling``
    one of ``POOLINGS``.
    """
    check_pooling(pooling, name, has_class_token=True)  # an unknown value fails before any loading
    tower = IMAGE_TOWERS.create(name, pretrained=pretrained and lock != "u", checkpoint=checkpoint,
                                allow_partial=allow_partial, pooling=pooling, **kwargs)
    tower.set_lock(lock, locked_blocks)
    return tower

