"""Run and export folders: their file names, and writing, reading and verifying what they hold.

Training, export, inference and studies ask this package instead of naming files themselves.
"""
from .checkpoints import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from .export import is_export, load_export, write_export
from .load import is_run_dir, load_run
from .record import keep_cache_manifest, read_summary, write_config, write_summary
from .weights import load_model_weights, model_info, read_info, save_model

__all__ = ["latest_checkpoint", "list_checkpoints", "load_checkpoint", "save_checkpoint", "is_export",
           "load_export", "write_export", "is_run_dir", "load_run", "keep_cache_manifest", "read_summary",
           "write_config", "write_summary", "load_model_weights", "model_info", "read_info", "save_model"]
