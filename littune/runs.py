"""Load a trained model from a run directory (``littune train`` / ``littune demo`` output).

A run directory holds ``config.yaml`` (the resolved experiment), ``model.safetensors`` and
``model_info.json`` (weights and the locked towers' fingerprints) and, for a scratch text tower
with its own vocabulary, ``tokenizer/``. The locked image tower is rebuilt from its source and
must have the fingerprint recorded at training time. An export folder (``littune export``) holds
every weight and loads through ``infer.export.load_export``.
"""
from __future__ import annotations

from pathlib import Path

from .model import LiTModel
from .train.checkpoint import MODEL_FILE, load_model_weights
from .train.config import ExperimentConfig, load_config


def is_run_dir(path: str | Path) -> bool:
    p = Path(path)
    return (p / "config.yaml").is_file() and (p / MODEL_FILE).is_file()


def load_run(path: str | Path, checkpoint: str | Path | None = None) -> tuple[LiTModel, ExperimentConfig]:
    """(model in eval mode, its experiment config). ``checkpoint``: a checkpoints/step_N folder."""
    run = Path(path)
    if not run.is_dir():
        raise FileNotFoundError(f"model directory not found: {run}")
    if not is_run_dir(run):
        raise ValueError(f"{run} is not a littune run or export: it needs config.yaml and {MODEL_FILE} "
                         "(made by `littune train`, `littune demo` or `littune export`)")
    from .infer.export import is_export, load_export

    if is_export(run):
        if checkpoint:
            raise ValueError(f"{run} is an export: it has no checkpoints to choose from")
        return load_export(run)
    cfg = load_config(run / "config.yaml")
    tokenizer = None
    if cfg.model.text.name == "scratch" and (run / "tokenizer" / "tokenizer.json").is_file():
        tokenizer = str(run / "tokenizer")
    model = cfg.model.build(tokenizer=tokenizer)
    load_model_weights(model, Path(checkpoint) if checkpoint else run)
    return model.eval(), cfg
