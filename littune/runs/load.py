"""Load a trained model from a run directory (``littune train`` / ``littune demo``) or an export.

A run directory holds ``config.yaml`` (the resolved experiment), ``model.safetensors`` and
``model_info.json`` (weights and every weight group's fingerprint) and, for a scratch text tower
with its own vocabulary, ``tokenizer/``. The locked image tower is rebuilt from its source; it and
every other group must have the fingerprint recorded at training time. An export folder holds
every weight and loads through ``runs.export.load_export``.
"""
from __future__ import annotations

from pathlib import Path

from ..config import ExperimentConfig, load_config
from ..model import LiTModel
from ..towers import ImageTower
from .export import is_export, load_export
from .files import CONFIG_FILE, MODEL_FILE, TOKENIZER_DIR
from .weights import load_model_weights


def is_run_dir(path: str | Path) -> bool:
    p = Path(path)
    return (p / CONFIG_FILE).is_file() and (p / MODEL_FILE).is_file()


def run_tokenizer(run: Path, cfg: ExperimentConfig) -> str | None:
    """A scratch text tower's own vocabulary, kept in the run (None for other towers)."""
    folder = Path(run) / TOKENIZER_DIR
    return str(folder) if cfg.model.text.name == "scratch" and (folder / "tokenizer.json").is_file() else None


def load_run(path: str | Path, checkpoint: str | Path | None = None, check: bool = True,
             image_tower: ImageTower | None = None, text_tower=None) -> tuple[LiTModel, ExperimentConfig]:
    """(model in eval mode, its experiment config). ``checkpoint``: a checkpoints/step_N folder;
    ``image_tower`` / ``text_tower``: the run's towers already built (their fingerprints are checked like
    any other weights).

    Every weight group is checked against its recorded fingerprint; a mismatch raises WeightsError
    naming the group (``check=False``: load anyway, for ``littune verify`` to report)."""
    run = Path(path)
    if not run.is_dir():
        raise FileNotFoundError(f"model directory not found: {run}")
    if not (is_run_dir(run) or (checkpoint and (run / CONFIG_FILE).is_file())):  # a checkpoint of a run in progress
        raise ValueError(f"{run} is not a littune run or export: it needs {CONFIG_FILE} and {MODEL_FILE} "
                         "(made by `littune train`, `littune demo` or `littune export`)")
    if is_export(run):
        if checkpoint:
            raise ValueError(f"{run} is an export: it has no checkpoints to choose from")
        return load_export(run, check=check)
    cfg = load_config(run / CONFIG_FILE)
    model = cfg.model.build(image_tower, tokenizer=run_tokenizer(run, cfg), text_tower=text_tower)
    load_model_weights(model, Path(checkpoint) if checkpoint else run, check=check)
    return model.eval(), cfg
