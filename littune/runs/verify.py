"""Prove a model folder holds the weights it claims: every group's fingerprint, recomputed.

``littune verify MODEL`` (a run directory, one of its ``checkpoints/step_N`` folders, or an export)
loads the weights without refusing a mismatch, recomputes the fingerprint of each weight group
(image tower, text tower, each head, temperature, bias) and of the whole model, and compares them
with what was recorded when the folder was written (model_info.json; export.json for an export).
Loading (``littune.load``, ``eval``, ``serve``) runs the same check and refuses any mismatch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .export import is_export, read_export_meta
from .files import STATE_FILE
from .load import load_run
from .weights import GroupCheck, WeightsError, compare_fingerprints, read_info


@dataclass
class VerifyReport:
    path: Path
    kind: str  # run | checkpoint | export
    rows: list[GroupCheck]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def mismatched(self) -> list[str]:
        return [r.group for r in self.rows if not r.ok]


def verify_model(path: str | Path) -> VerifyReport:
    folder = Path(path)
    if (folder / STATE_FILE).is_file():  # RUN/checkpoints/step_N: the run's config builds the model
        model, _ = load_run(folder.parent.parent, checkpoint=folder, check=False)
        kind = "checkpoint"
    else:
        model, _ = load_run(folder, check=False)
        kind = "export" if is_export(folder) else "run"
    if kind == "export":
        recorded = read_export_meta(folder)["fingerprints"]
    else:
        info = read_info(folder)
        if info is None:
            raise WeightsError(f"{folder}: no model_info.json: nothing recorded to verify against")
        recorded = info.get("fingerprints") or {}
    return VerifyReport(folder, kind, compare_fingerprints(model, recorded))
