"""How ``littune embed`` writes a cache: the options and their defaults, in one place.

Torch-free on purpose: the command line shows these defaults in ``--help`` without importing torch.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..data.images import DEFAULT_MAX_PIXELS


@dataclass
class EmbedOptions:
    shard_size: int = 10_000
    dtype: str = "float16"
    views: int = 0  # augmented views per image, besides the plain eval view
    batch_size: int = 64
    num_workers: int | None = None  # None: one per spare core (at least 1)
    seed: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS
    progress: bool = True
    engine: str = "auto"  # torch | openvino | onnx | auto (OpenVINO where installed): towers/engine.py
    threads: int | None = None  # engine threads (None: torch's setting)
