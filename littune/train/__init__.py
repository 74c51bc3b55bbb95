"""LiT training: configs, batches (cached or live), optimiser, checkpoints, the loop."""
from ..config import ConfigError, ExperimentConfig, load_config, to_yaml
from .loop import NonFiniteLoss, Trainer, train

__all__ = ["ConfigError", "ExperimentConfig", "load_config", "to_yaml", "NonFiniteLoss", "Trainer", "train"]
