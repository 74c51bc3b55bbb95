"""A model's weights in a folder: ``model.safetensors`` plus ``model_info.json`` (fingerprints).

A locked tower's weights are not copied into a run (they come from its source); its fingerprint is
stored and checked on load, so a run can never be paired with a different locked tower by mistake.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..model import LiTModel
from .files import INFO_FILE, MODEL_FILE


def locked_prefixes(model: LiTModel) -> list[str]:
    return [f"{name}." for name in ("image", "text") if getattr(model, name).locked]


def model_state(model: LiTModel) -> dict[str, torch.Tensor]:
    skip = tuple(locked_prefixes(model))
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
            if not (skip and k.startswith(skip))}


def model_info(model: LiTModel) -> dict[str, Any]:
    return {"fingerprints": model.fingerprints(), "not_saved": locked_prefixes(model),
            "embed_dim": model.embed_dim}


def read_info(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / INFO_FILE
    return json.loads(path.read_text()) if path.is_file() else None


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
    info = read_info(folder)
    if info is not None:
        for prefix in info.get("not_saved", []):
            tower = prefix.rstrip(".")
            want, have = info["fingerprints"][tower], getattr(model, tower).fingerprint()
            if want != have:
                raise ValueError(f"{folder}: the locked {tower} tower's weights differ from training "
                                 f"(fingerprint {have} != {want}); the run needs the exact same weights")
