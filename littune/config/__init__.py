"""Typed configs and their one loader: experiments (``littune train``), shared by studies and runs.

Names are imported on first use (``littune.lazy``).
"""
from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".experiment": ["DataConfig", "ExperimentConfig", "OptimConfig", "TrainConfig", "load_config", "validate"],
    ".loader": ["ConfigError", "ConfigWarning", "load_structured", "parse_options", "to_yaml"],
})
