"""Typed configs and their one loader: experiments (``littune train``), shared by studies and runs."""
from .experiment import DataConfig, ExperimentConfig, OptimConfig, TrainConfig, load_config, validate
from .loader import ConfigError, load_structured, parse_options, to_yaml

__all__ = ["ConfigError", "DataConfig", "ExperimentConfig", "OptimConfig", "TrainConfig", "load_config",
           "load_structured", "parse_options", "to_yaml", "validate"]
