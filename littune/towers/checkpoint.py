"""Load a weights file into a tower, failing loudly on anything that does not fit.

Accepts safetensors or torch files (a bare state dict, or one under 'state_dict' / 'model').
A partial load lists what was missing and unexpected and fails unless the caller asked for it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import nn


class CheckpointMismatch(ValueError):
    pass


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping):
        raise CheckpointMismatch(f"{path}: not a state dict (found {type(obj).__name__})")
    return dict(obj)


def load_into(module: nn.Module, state: Mapping[str, torch.Tensor], *, source: str,
              allow_partial: bool = False, rename: Callable[[str], str] | None = None) -> dict:
    """Copy ``state`` into ``module``; report (and refuse) missing, unexpected and mis-shaped keys."""
    if rename is not None:
        state = {rename(k): v for k, v in state.items()}
    own = module.state_dict()
    shape_bad = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                 for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    report = {"missing": missing, "unexpected": unexpected, "shape_mismatch": shape_bad}
    if shape_bad or ((missing or unexpected) and not allow_partial):
        lines = [f"{source} does not fit {type(module).__name__}:"]
        for what, keys in report.items():
            if keys:
                shown = ", ".join(keys[:8]) + (f" ... (+{len(keys) - 8})" if len(keys) > 8 else "")
                lines.append(f"  {what} ({len(keys)}): {shown}")
        if not shape_bad:
            lines.append("  pass allow_partial=True to load what fits")
        raise CheckpointMismatch("\n".join(lines))
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return report
