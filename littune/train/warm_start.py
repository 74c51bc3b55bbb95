"""Warm start: begin a run from another run's heads (``train.init_from=RUN``).

The recipe it serves: align heads on two caches in seconds (both towers locked), then unlock the
top of the text tower for a short tuning phase that starts from those heads instead of random ones.
``train.init_parts`` names exactly what is copied (default: both heads, the temperature and the
bias; add ``text`` to continue from the source's trained text tower too).

The source must have been trained on the same towers: every tower whose weights are not copied
must have the fingerprint the source recorded (model_info.json), and every copied tensor must have
the same shape, so heads never meet features they were not trained on. What is copied is proven to
be what the source recorded: each copied group's fingerprint is compared with its model_info.json.
"""
from __future__ import annotations

from pathlib import Path

import torch
from ..config import ConfigError
from ..model import LiTModel
from ..runs import read_info
from ..runs.weights import read_weights
from ..runs.files import MODEL_FILE

PARTS = ("image_head", "text_head", "logit_scale", "logit_bias", "text", "image")


def warm_start(model: LiTModel, run: str | Path, parts: list[str]) -> dict[str, list[str]]:
    """Copy ``parts`` of the run at ``run`` into ``model``; returns {part: the tensor names copied}."""
    run = Path(run)
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ConfigError(f"train.init_parts={parts}: choose from {', '.join(PARTS)}")
    info = read_info(run)
    if not (run / MODEL_FILE).is_file() or info is None:
        raise ConfigError(f"train.init_from={run}: not a finished littune run (needs {MODEL_FILE} and model_info.json)")
    state = read_weights(run / MODEL_FILE)
    have = model.fingerprints()
    for tower in ("image", "text"):
        if tower in parts:
            continue
        want = info["fingerprints"].get(tower)
        if want != have[tower]:
            raise ConfigError(f"train.init_from={run}: its {tower} tower differs from this run's (fingerprint "
                              f"{want} != {have[tower]}); its heads were trained on other features. Use a run "
                              f"with the same model.{tower} settings, or add '{tower}' to train.init_parts")
    own = model.state_dict()
    copied: dict[str, list[str]] = {}
    with torch.no_grad():
        for part in parts:
            names = [k for k in own if k == part or k.startswith(part + ".")]
            missing = [k for k in names if k not in state]
            if missing:
                raise ConfigError(f"train.init_from={run}: it has no {part} weights ({missing[:3]}...): "
                                  f"a locked tower is not saved in a run; drop '{part}' from train.init_parts")
            for k in names:
                if state[k].shape != own[k].shape:
                    raise ConfigError(f"train.init_from={run}: {k} is {tuple(state[k].shape)} there and "
                                      f"{tuple(own[k].shape)} here (another embedding size or head); "
                                      "use a run with the same model settings")
                own[k].copy_(state[k])
            copied[part] = names
    have = model.fingerprints()
    changed = [p for p in parts if info["fingerprints"].get(p, have[p]) != have[p]]
    if changed:
        raise ConfigError(f"train.init_from={run}: its weights of {', '.join(changed)} differ from the fingerprints "
                          f"its model_info.json recorded: the run was changed or damaged after training "
                          f"(`littune verify {run}` shows every group)")
    return copied
