"""How ``littune index`` builds an image index: the options and their defaults, in one place.

Torch-free on purpose: the command line shows these defaults in ``--help`` without importing torch.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class IndexOptions:
    faiss_threshold: int = 50_000  # from this many images on, search with FAISS
    faiss_factory: str = "Flat"  # FAISS index_factory string; "Flat" is exact
    batch_size: int = 64
    num_workers: int | None = None  # image decoding workers (None: one per spare core)
    shard_size: int = 10_000  # a killed run resumes from its last complete shard
    progress: bool = True
