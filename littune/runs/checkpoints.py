"""Checkpoints: model weights in safetensors, everything else needed to resume in ``state.pt``.

    checkpoints/step_0000100/model.safetensors   trainable towers, heads, temperature, bias
    checkpoints/step_0000100/model_info.json     every weight group's fingerprint
    checkpoints/step_0000100/state.pt            optimiser, scheduler, step, data position, RNGs
                                                 (each process's own, and the number of processes)
    checkpoints/step_0000100/config.yaml         the run's config and training data when it was written
    checkpoints/step_0000100/cache_manifest.json   (what ``--resume`` compares against: train/resume.py)
Each checkpoint is written to a temporary folder and renamed, so a kill never leaves half of one; a
write that fails (a full or read-only disk) removes its temporary folder, keeps every earlier
checkpoint as it was, and says so.
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
from .files import CACHE_MANIFEST_FILE, CHECKPOINTS_DIR, CONFIG_FILE, STATE_FILE
from .weights import load_model_weights, save_model

RECORDS = (CONFIG_FILE, CACHE_MANIFEST_FILE)  # copied from the run into each checkpoint


class CheckpointError(OSError):
    """A checkpoint that could not be written or read; the message names it and the way on."""


class WorldSizeChanged(ValueError):
    """A checkpoint of a run with N processes resumed with another number: each process restores its
    own random state and reads its own share of every batch, so the run would not continue as it was."""


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # dropout on a GPU draws from these
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def save_checkpoint(run_dir: Path, step: int, model: LiTModel, optimizer, scheduler, extra: dict,
                    keep: int = 2, rng_ranks: list[dict] | None = None) -> Path:
    """``rng_ranks``: every process's ``rng_state()`` in rank order (gathered to rank 0, which writes);
    None for one process, whose state is this one's."""
    root = run_dir / CHECKPOINTS_DIR
    final = root / f"step_{step:07d}"
    tmp, old = root / f".tmp_step_{step:07d}", root / f".old_step_{step:07d}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        save_model(model, tmp)
        with open(tmp / STATE_FILE, "wb") as f:  # a file object: a full disk then raises OSError (ENOSPC)
            rngs = rng_ranks or [rng_state()]
            torch.save({"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "rng": rngs[0], "rng_ranks": rngs, "world_size": len(rngs), **extra}, f)
        for name in RECORDS:
            if (run_dir / name).is_file():
                shutil.copyfile(run_dir / name, tmp / name)
    except Exception as e:  # safetensors and torch.save wrap the OSError: say what it means
        shutil.rmtree(tmp, ignore_errors=True)
        last = latest_checkpoint(run_dir)
        raise CheckpointError(
            f"could not write checkpoint {final} ({_reason(e)}); nothing of it was kept. "
            + (f"The previous checkpoint {last} is intact: free space (or fix the folder's permissions) and "
               "continue with --resume" if last else "No earlier checkpoint exists: free space (or fix the "
               "folder's permissions) and start again")) from e
    if final.exists():  # the same step again (a finished run resumed): swap, never a moment without it
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    for stale in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(stale, ignore_errors=True)
    return final


def _reason(e: BaseException) -> str:
    """The OS's reason underneath a library's wrapper (disk full, read-only, ...)."""
    for err in (e, e.__cause__, e.__context__):
        if isinstance(err, OSError) and err.strerror:
            return f"{err.strerror}" + (f": {err.filename}" if err.filename else "")
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:300]


def list_checkpoints(run_dir: Path) -> list[Path]:
    root = run_dir / CHECKPOINTS_DIR
    return sorted(p for p in root.glob("step_*") if (p / STATE_FILE).is_file()) if root.is_dir() else []


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def read_state(path: Path) -> dict:
    """A checkpoint's state.pt; a damaged one is named, with the way to the previous checkpoint."""
    try:
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises RuntimeError / UnpicklingError / EOFError on damaged files
        raise CheckpointError(f"{path / STATE_FILE} is damaged or truncated ({_reason(e)}); move {path} "
                              "away to resume from the checkpoint before it") from None
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{path / STATE_FILE} is not a littune checkpoint state")
    return state


def load_checkpoint(path: Path, model: LiTModel, optimizer, scheduler, rank: int = 0, world: int = 1) -> dict:
    """Restore a checkpoint into process ``rank`` of ``world``: weights, optimiser, schedule and this
    process's own random state (a run of another number of processes is refused, naming both)."""
    state = read_state(path)
    saved = state.get("world_size")  # checkpoints of older versions did not record it
    if saved is not None and int(saved) != world:
        raise WorldSizeChanged(
            f"cannot resume from {path}: it was written by a run of {saved} process(es), this run has {world} "
            f"(this is rank {rank}); each process restores its own random state and reads its own share of every "
            f"batch: resume with {saved} process(es) (torchrun --nproc_per_node / --nnodes), or start a new run "
            "in another train.out_dir")
    load_model_weights(model, path)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    ranks = state.get("rng_ranks")
    set_rng_state(ranks[rank] if ranks else state["rng"])  # older checkpoints: rank 0's, on every rank
    return state
