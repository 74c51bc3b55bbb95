"""``littune export``: write a loaded model into a new folder, all or nothing.

The littune format (``runs/export.py``) is always written; where both towers come from Hugging Face,
a transformers ``VisionTextDualEncoderModel`` goes beside it in ``hf_dual_encoder/`` (``hf_dual.py``).
Everything is written into ``OUT.tmp`` and renamed at the end, so a killed export leaves no half folder.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from ..runs import write_export
from ..runs.export import merged_copy


def export_model(lit, out: str | Path, hf: bool = True) -> dict:
    """Write ``lit`` (a ``LiT``) as an export folder; returns what export.json records."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"--out {out} exists and is not empty; choose a new folder")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model, cfg = merged_copy(lit.model, lit.cfg)  # LoRA adapters folded in: every format gets plain weights
    if model is not lit.model:
        lit = type(lit)(model, cfg, lit.source)
    extra = {"hf_dual_encoder": None, "hf_dual_encoder_skipped": None}
    if hf:
        from .hf_dual import UnsupportedDualEncoder, write_dual_encoder

        try:
            extra["hf_dual_encoder"] = write_dual_encoder(lit, tmp / "hf_dual_encoder").name
        except UnsupportedDualEncoder as e:
            extra["hf_dual_encoder_skipped"] = str(e)
    meta = write_export(lit.model, lit.cfg, tmp, lit.source, extra)
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return meta
