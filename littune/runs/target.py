"""Output folders that never overwrite what is not theirs, and temporary folders that collide with nothing.

Training, export, interpolation, index building and studies write into a folder only when it is
empty (or missing), holds that command's own unfinished work, or ``--resume``/``--force`` says to.
A folder holding a model, a config or an export record of something else is refused with a
message naming the file; so is one holding files the command does not write (the user's).

Temporary folders (a whole export written aside, then renamed into place) get unique names from
``tempfile.mkdtemp`` (``.OUT.tmp-k3j2x/``), never ``OUT.tmp``, which may be a folder of the user's.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable

from .files import CHECKPOINTS_DIR, CONFIG_FILE, EXPORT_FILE, INFO_FILE, MODEL_FILE

# What marks a folder as holding a model, a config or an export record, and what it is.
RECORDS = {EXPORT_FILE: "an export record", MODEL_FILE: "a trained model", INFO_FILE: "a model's record",
           "open_clip_model.safetensors": "an open_clip export", CONFIG_FILE: "a run's config",
           "index.json": "an image index", "manifest.json": "an embedding cache"}
# Names a run folder holds (runs/files.py), and the study's marker of the setting a folder trains.
RUN_NAMES = frozenset({CONFIG_FILE, MODEL_FILE, INFO_FILE, "summary.json", "metrics.jsonl", "metrics.tsv",
                       "cache_manifest.json", "text_cache_manifest.json", "prefix_cache_manifest.json",
                       CHECKPOINTS_DIR, "resumes.json", "tokenizer", "report", "bad_inputs.tsv", "study_setting.json",
                       "result.json"})


class FolderTaken(FileExistsError):
    """The output folder holds what this command must not overwrite."""


def _entries(out: Path) -> list[str]:
    if out.exists() and not out.is_dir():
        raise FolderTaken(f"{out} exists and is not a folder")
    return sorted(os.listdir(out)) if out.is_dir() else []


def check_output(out: str | Path, key: str, own: Iterable[str] = (), *, protect: Iterable[str] = RECORDS,
                 fix: str = "choose an empty or new folder") -> None:
    """Refuse ``out`` unless every entry is one of ``own`` (this command's own files, hidden
    temporary names included) and none is a record in ``protect``. ``key`` names the option."""
    out, own = Path(out), set(own)
    entries = [e for e in _entries(out) if not e.startswith(".")]  # hidden: temporary names, .DS_Store
    for name in entries:
        if name in protect and name not in own:
            raise FolderTaken(f"{key} {out} holds {name} ({RECORDS.get(name, 'a record')}) that this command "
                              f"does not own; {fix}")
    foreign = [e for e in entries if e not in own]
    if foreign:
        shown = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
        raise FolderTaken(f"{key} {out} is not empty and holds files this command does not write ({shown}); {fix}")


def check_run_folder(out: str | Path, config_yaml: str) -> None:
    """A new training run's ``train.out_dir``: empty, or a run of this very config that never saved
    a model or a checkpoint (a restart). A checkpoint asks for ``--resume``."""
    out = Path(out)
    if (out / CHECKPOINTS_DIR).is_dir() and any(p.name.startswith("step_") for p in (out / CHECKPOINTS_DIR).iterdir()):
        raise FolderTaken(f"{out} already holds a run; pass --resume to continue it or choose another train.out_dir")
    own = set(RUN_NAMES) - {MODEL_FILE, INFO_FILE}
    config = out / CONFIG_FILE
    if config.is_file() and config.read_text() != config_yaml:
        own.discard(CONFIG_FILE)  # another run's config: refused below, by name
    check_output(out, "train.out_dir", own, fix="choose another train.out_dir (or move that folder away)")


def temp_folder(out: str | Path, tag: str = "tmp") -> Path:
    """A new, unique, empty folder beside ``out`` (same file system: renamed into place at the end)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.{tag}-", dir=out.parent))
