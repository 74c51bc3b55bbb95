"""Checkpoints: model weights in safetensors, everything else needed to resume in ``state.pt``.

    checkpoints/step_0000100/model.safetensors   trainable towers, heads, temperature, bias
    checkpoints/step_0000100/state.pt            optimiser, scheduler, step, data position, RNGs
A locked tower's weights are not copied (they come from its source); its fingerprint is stored
and checked on load, so a run can never be paired with a different locked tower by mistake.
Each checkpoint is written to a temporary folder and renamed, so a kill never leaves half of one.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..model import LiTModel

MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"
INFO_FILE = "model_info.json"


def locked_prefixes(model: LiTModel) -> list[str]:
    return [f"{name}." for name in ("image", "text") if getattr(model, name).locked]


def model_state(model: LiTModel) -> dict[str, torch.Tensor]:
    skip = tuple(locked_prefixes(model))
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
            if not (skip and k.startswith(skip))}


def model_info(model: LiTModel) -> dict[str, Any]:
    return {"fingerprints": model.fingerprints(), "not_saved": locked_prefixes(model),
            "embed_dim": model.embed_dim}


def save_model(model: LiTModel, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file(model_state(model), str(folder / MODEL_FILE))
    (folder / INFO_FILE).write_text(json.dumps(model_info(model), indent=2))


def load_model_weights(model: LiTModel, folder: Path) -> None:
    """Load saved weights and prove the locked towers are the ones the run was trained with."""
    state = load_file(str(folder / MODEL_FILE))
    expected = set(model_state(model))
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"{folder / MODEL_FILE} does not fit the model built from its config: "
                         f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                         f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    model.load_state_dict(state, strict=False)
    info_path = folder / INFO_FILE
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        for prefix in info.get("not_saved", []):
            tower = prefix.rstrip(".")
            want, have = info["fingerprints"][tower], getattr(model, tower).fingerprint()
            if want != have:
                raise ValueError(f"{folder}: the locked {tower} tower's weights differ from training "
                                 f"(fingerprint {have} != {want}); the run needs the exact same weights")


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])


def save_checkpoint(run_dir: Path, step: int, model: LiTModel, optimizer, scheduler, extra: dict,
                    keep: int = 2) -> Path:
    root = run_dir / "checkpoints"
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
    root = run_dir / "checkpoints"
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
