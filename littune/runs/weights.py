"""A model's weights in a folder: ``model.safetensors`` plus ``model_info.json`` (fingerprints).

A locked tower's weights are not copied into a run (they come from its source); its fingerprint is
stored and checked on load, so a run can never be paired with a different locked tower by mistake.
Every other weight group (text tower, each head, temperature, bias) and the whole model are
fingerprinted too (``LiTModel.fingerprints``): loading recomputes them all and refuses any that
differs, naming the group, so a changed or damaged file never loads as a silently different model.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..model import LiTModel
from ..towers.tuning import tuning_info
from .files import INFO_FILE, MODEL_FILE

WHOLE = "model"  # the fingerprint of every tensor together, beside one per group


class WeightsError(ValueError):
    """Weights that cannot be used as they are: a damaged file, other shapes, or other fingerprints."""


@dataclass
class GroupCheck:
    """One weight group's recorded fingerprint against the one its loaded weights give."""
    group: str
    recorded: str | None  # None: not recorded (a folder written before the group had a fingerprint)
    computed: str

    @property
    def ok(self) -> bool:
        return self.recorded is None or self.recorded == self.computed


def locked_prefixes(model: LiTModel) -> list[str]:
    return [f"{name}." for name in ("image", "text") if getattr(model, name).locked]


def model_state(model: LiTModel) -> dict[str, torch.Tensor]:
    skip = tuple(locked_prefixes(model))
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
            if not (skip and k.startswith(skip))}


def model_info(model: LiTModel) -> dict[str, Any]:
    return {"fingerprints": model.fingerprints(), "not_saved": locked_prefixes(model),
            "embed_dim": model.embed_dim, "parameters": model.parameter_counts(),
            "text_tuning": tuning_info(model.text)}


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON file the folder needs; a damaged one is named with the fix."""
    try:
        data = json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise WeightsError(f"{path}: not valid JSON ({e}); the folder is damaged: restore {what} "
                           "from a copy, or train/export again") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: expected a JSON object; the folder is damaged")
    return data


def read_info(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / INFO_FILE
    return read_json(path, INFO_FILE) if path.is_file() else None


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a truncated or damaged file is named, never a bare library error."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own SafetensorError (header, size, dtype problems)
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WeightsError(f"{path} is damaged or truncated ({reason}); restore it from a copy, "
                           "or train/export the model again") from None


def save_model(model: LiTModel, folder: Path) -> None:
    """Write the weights and then model_info.json, each to a temporary name first and renamed: a
    failed write (a full disk) leaves the previous files as they were, never half a file."""
    folder.mkdir(parents=True, exist_ok=True)
    _atomic(folder / MODEL_FILE, lambda p: save_file(model_state(model), str(p)))
    _atomic(folder / INFO_FILE, lambda p: p.write_text(json.dumps(model_info(model), indent=2)))


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_shapes(model: LiTModel, state: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse weights of other shapes, naming them, instead of torch's ``size mismatch`` traceback."""
    own = model.state_dict()
    bad = [f"{k}: file {tuple(v.shape)}, model {tuple(own[k].shape)}" for k, v in state.items()
           if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise WeightsError(f"{path} holds weights of other shapes than the model its config builds "
                           f"({'; '.join(bad[:3])}{'; ...' if len(bad) > 3 else ''}): a model setting "
                           "(e.g. model.text.width) differs from the one these weights were trained with")


def compare_fingerprints(model: LiTModel, recorded: dict[str, str]) -> list[GroupCheck]:
    """Every group's recorded fingerprint against the one the model's weights give now."""
    have = model.fingerprints()
    return [GroupCheck(group, recorded.get(group), fp) for group, fp in have.items()]


def check_fingerprints(rows: list[GroupCheck], where: Path, locked: list[str] = ()) -> None:
    """Raise WeightsError naming each group whose weights differ from the recorded fingerprint."""
    bad = [r for r in rows if not r.ok]
    if not bad:
        return
    named = [r for r in bad if r.group != WHOLE] or bad  # the whole model differs whenever a group does
    lines = []
    for r in named:
        if f"{r.group}." in locked:
            lines.append(f"the locked {r.group} tower's weights differ from training (fingerprint {r.computed} "
                         f"!= {r.recorded}); the run needs the exact same weights from the tower's source")
        else:
            lines.append(f"{r.group}: weights give fingerprint {r.computed}, {r.recorded} was recorded")
    groups = ", ".join(r.group for r in named)
    raise WeightsError(f"{where}: refusing to load: the weights of {groups} are not the ones recorded ("
                       + "; ".join(lines) + "). The files were changed or damaged after they were written: "
                       "restore them, or train/export again (`littune verify` shows every group)")


def load_model_weights(model: LiTModel, folder: Path, check: bool = True) -> list[GroupCheck]:
    """Load saved weights and prove every group is the one recorded when they were saved.

    Returns each group's check; with ``check`` (the default) any mismatch raises WeightsError.
    """
    path = Path(folder) / MODEL_FILE
    state = read_weights(path)
    expected = set(model_state(model))
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise WeightsError(f"{path} does not fit the model built from its config: "
                           f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                           f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    check_shapes(model, state, path)
    with torch.no_grad():
        model.load_state_dict(state, strict=False)
    info = read_info(folder)
    if info is None or not isinstance(info.get("fingerprints"), dict):
        raise WeightsError(f"{Path(folder) / INFO_FILE} is missing or holds no fingerprints: the weights "
                           "cannot be verified; restore it from a copy, or train again")
    rows = compare_fingerprints(model, info["fingerprints"])
    if check:
        check_fingerprints(rows, Path(folder), locked=info.get("not_saved", []))
    return rows
