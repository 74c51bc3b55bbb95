"""``littune export``: write a loaded model into a new folder, all or nothing, with a model card.

    littune    littune's own format (``runs/export.py``), read by ``littune.load``; where both towers
               come from Hugging Face, a transformers ``VisionTextDualEncoderModel`` goes beside it in
               ``hf_dual_encoder/`` (``hf_dual.py``)
    open_clip  a folder ``open_clip.create_model_and_transforms("local-dir:DIR")`` opens offline
               (``open_clip_export.py``); ``littune eval --model local-dir:DIR`` reads it too

Every export gets ``README.md`` (a Hugging Face model card) and ``metrics.json`` (``card.py``). A model
the format cannot represent is refused before anything is written; everything is written into
a uniquely named ``.OUT.tmp-XXXX`` beside it (never a folder of the user's) and renamed at the end, so a
killed export leaves no half folder. An existing folder that
is not empty is replaced only with ``force``.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..runs import write_export
from ..runs.export import merged_copy
from ..runs.target import temp_folder
from .card import write_card

FORMATS = ("littune", "open_clip")


def _check_target(out: Path, force: bool, source: str | None) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} exists and is not a folder")
    if not out.exists() or not any(out.iterdir()):
        return
    if not force:
        raise FileExistsError(f"--out {out} exists and is not empty; choose a new folder (or pass --force to "
                              "replace it)")
    target = out.resolve()
    protected = {Path.cwd().resolve(), Path.home().resolve(), Path(target.anchor)}
    if target in protected or (source and Path(source).resolve().is_relative_to(target)):
        raise FileExistsError(f"--out {out} holds the working folder, the home folder or the model itself; "
                              "--force replaces only a folder of its own")


def _replace(tmp: Path, out: Path) -> None:
    """Put ``tmp`` where ``out`` is; an old ``out`` is removed only once the new one is in place."""
    if not out.exists():
        tmp.rename(out)
        return
    old = temp_folder(out, "old")
    os.replace(out, old)  # onto the empty unique folder (rename over an empty directory)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def export_model(lit, out: str | Path, format: str = "littune", hf: bool = True, force: bool = False,
                 license: str = "other") -> dict:
    """Write ``lit`` (a ``LiT``) as an export folder; returns what the format's record holds."""
    if format not in FORMATS:
        raise ValueError(f"--format {format!r}: use one of {', '.join(FORMATS)}")
    out = Path(out)
    _check_target(out, force, lit.source)
    model, cfg = merged_copy(lit.model, lit.cfg)  # LoRA adapters folded in: every format gets plain weights
    if model is not lit.model:
        lit = type(lit)(model, cfg, lit.source)
    plan = None
    if format == "open_clip":
        from .open_clip_export import plan_open_clip

        plan = plan_open_clip(lit, out)  # raises NotRepresentable before anything is written
    tmp = temp_folder(out)  # a unique name: never a folder of the user's
    try:
        if plan is not None:
            from .open_clip_export import write_open_clip

            meta = {"format": "open_clip", **write_open_clip(lit, plan, tmp, lit.source)}
            fingerprints = {"littune (as trained)": meta["littune_fingerprints"],
                            "this folder (open_clip_model.safetensors)": meta["fingerprints"]}
            note = None
        else:
            meta = {"format": "littune", **_write_littune(lit, tmp, hf)}
            fingerprints = {"littune": meta["fingerprints"]}
            note = _open_clip_note(lit, out)
        write_card(tmp, lit, format, fingerprints, license=license, name=str(out), open_clip_note=note)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _replace(tmp, out)
    return meta


def _write_littune(lit, tmp: Path, hf: bool) -> dict:
    extra = {"hf_dual_encoder": None, "hf_dual_encoder_skipped": None}
    if hf:
        from .hf_dual import UnsupportedDualEncoder, write_dual_encoder

        try:
            extra["hf_dual_encoder"] = write_dual_encoder(lit, tmp / "hf_dual_encoder").name
        except UnsupportedDualEncoder as e:
            extra["hf_dual_encoder_skipped"] = str(e)
    return write_export(lit.model, lit.cfg, tmp, lit.source, extra)


def _open_clip_note(lit, out: Path) -> str:
    """What the card of a littune-format export says about open_clip: the command, or why not."""
    from .open_clip_export import NotRepresentable, plan_open_clip

    try:
        plan_open_clip(lit, out)
    except NotRepresentable as e:
        return f"not exportable as it is ({e})."
    except Exception as e:  # noqa: BLE001 - the note is prose: a failed check must not fail the export
        return f"could not be checked ({type(e).__name__}: {e})."
    return (f"`littune export --model {out} --out {out}-open_clip --format open_clip` writes a folder that "
            f"`open_clip.create_model_and_transforms('local-dir:{out}-open_clip')` opens.")
