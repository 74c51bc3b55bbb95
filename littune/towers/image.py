"""Image towers: a registry of pre-trained vision models, each giving a pooled pre-logits embedding.

``create_image_tower("timm:vit_base_patch16_224")``, ``create_image_tower("hf:facebook/dinov2-small")``
or the offline default ``create_image_tower("efficientnet_lite0")``. Every tower knows its
embedding size and its own preprocessing (from the model's config), and can be locked.
"""
from __future__ import annotations

from typing import Any

import torch

from .catalog import IMAGE_TOWERS, list_image_towers  # noqa: F401  (re-exported)
from .lock import Lockable, fingerprint
from .preprocess import Preprocess

class ImageTower(Lockable):
    """Base class: ``forward(pixels (B,3,H,W)) -> (B, embed_dim)`` pooled pre-logits features."""

    name: str
    embed_dim: int
    preprocess: Preprocess

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        with self.grad_context():
            return self.features(pixels)

    def fingerprint(self) -> str:
        return fingerprint(self)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "embed_dim": self.embed_dim,
                "preprocess": self.preprocess.to_dict(), **self.lock_summary()}


def create_image_tower(name: str, *, pretrained: bool = True, checkpoint: str | None = None,
                       lock: str = "L", locked_blocks: int = 0, allow_partial: bool = False,
                       **kwargs: Any) -> ImageTower:
    """Build a registered image tower and apply its lock setting.

    ``pretrained`` loads the source's own weights (timm hub, HF folder/hub, packaged file);
    ``checkpoint`` loads a local weights file instead and fails on keys that do not fit
    unless ``allow_partial``. ``lock`` is 'L', 'U' or 'u' (see ``lock.LOCK_MODES``).
    """
    tower = IMAGE_TOWERS.create(name, pretrained=pretrained and lock != "u", checkpoint=checkpoint,
                                allow_partial=allow_partial, **kwargs)
    tower.set_lock(lock, locked_blocks)
    return tower

