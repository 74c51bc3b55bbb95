"""How ``littune embed`` writes a cache: the options and their defaults, in one place.

Torch-free on purpose: the command line shows these defaults in ``--help`` without importing torch.

Shard size: a shard is the unit a killed run resumes from, so its size is the work a kill can lose.
On this project's reference machine (2 CPU cores, OpenVINO engine, EfficientNet-Lite0) embedding runs
at about 60 images/s, so by default a data set is cut into about ``TARGET_SHARDS`` shards of
``MIN_SHARD`` to ``MAX_SHARD`` images: a 1,000-image index is 4 shards of 250 (a kill loses ~4 s), a
6,000-image Flickr8k split 8 of 750 (~13 s), and from 32,768 images on every shard holds 4,096
(~70 s: at most about a minute lost). A shard has a fixed cost of ~0.25 s here (starting and
stopping its decoding worker; measured on a shared machine), ~6% of a 250-image shard, less than 1%
from 2,000 images on: smaller shards would pay for resumability more than it is worth.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..data.images import DEFAULT_MAX_PIXELS

TARGET_SHARDS, MIN_SHARD, MAX_SHARD = 8, 250, 4096


def auto_shard_size(n_items: int) -> int:
    """Images per shard for ``n_items`` images: about n/8, within [MIN_SHARD, MAX_SHARD]."""
    return max(MIN_SHARD, min(MAX_SHARD, -(-n_items // TARGET_SHARDS)))


@dataclass
class EmbedOptions:
    shard_size: int | None = None  # None: auto_shard_size of the data (a resumed cache keeps its own)
    dtype: str = "float16"
    views: int = 0  # augmented views per image, besides the plain eval view
    batch_size: int = 64
    num_workers: int | None = None  # None: one per spare core (at least 1)
    seed: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS
    progress: bool = True
    engine: str = "auto"  # torch | openvino | onnx | auto (OpenVINO where installed): towers/engine.py
    threads: int | None = None  # engine threads (None: torch's setting)
