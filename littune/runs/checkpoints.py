"""Checkpoints: model weights in safetensors, everything else needed to resume in ``state.pt``.

    checkpoints/step_0000100/model.safetensors   trainable towers, heads, temperature, bias
    checkpoints/step_0000100/state.pt            optimiser, scheduler, step, data position, RNGs
Each checkpoint is written to a temporary folder and renamed, so a kill never leaves half of one.
"""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..model import LiTModel
from .files import CHECKPOINTS_DIR, STATE_FILE
from .weights import load_model_weights, save_model


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])


def save_checkpoint(run_dir: Path, step: int, model: LiTModel, optimizer, scheduler, extra: dict,
                    keep: int = 2) -> Path:
    root = run_dir / CHECKPOINTS_DIR
    final = root / f"step_{step:07d}"
    tmp = root / f".tmp_step_{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(model, tmp)
    torch.save({"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": rng_state(), **extra}, tmp / STATE_FILE)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    root = run_dir / CHECKPOINTS_DIR
    return sorted(p for p in root.glob("step_*") if (p / STATE_FILE).is_file()) if root.is_dir() else []


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def load_checkpoint(path: Path, model: LiTModel, optimizer, scheduler) -> dict:
    load_model_weights(model, path)
    state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return state
