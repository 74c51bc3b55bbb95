"""LiT training: configs, batches (cached or live), optimiser, checkpoints, the loop.

Names are imported on first use (``littune.lazy``).
"""
from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "..config": ["ConfigError", "ExperimentConfig", "load_config", "to_yaml"],
    ".loop": ["NonFiniteLoss", "Trainer", "train"],
})
