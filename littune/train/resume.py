"""Honest resume: a run continues only with the settings and the data its checkpoint was made with.

``littune train --resume`` compares the resolved config and the training data's identity with the
ones recorded in the latest checkpoint (``checkpoints/step_N/config.yaml`` and
``cache_manifest.json``, copied there when it was written; the run's own files for checkpoints of
older versions):

* a key that changes what is trained (model, optimiser, schedule, batch, loss, precision, data,
  seed, ...) is refused, naming every changed key with both values; ``train.steps`` is one of
  them, because warmup and the cosine decay are laid out over it (another value changes the
  learning rate of every remaining step);
* a key that cannot change the result (logging, evaluation cadence and evaluations, progress,
  threads, device, checkpoint cadence, workers, the warm-start source, which a resumed run does not
  read) is allowed and recorded, with the step resumed from, in ``resumes.json`` in the run.
The training data is named by the source spec (``data.train``, a training key) and, on the cached
path, identified by the cache's manifest: a cache moved to another folder (``data.train_cache``,
``data.cache_root``) is the same data; another or re-embedded cache that differs is refused.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ..cache.manifest import MANIFEST
from ..config import ConfigError, ExperimentConfig, load_config
from ..runs import latest_checkpoint
from ..runs.files import CACHE_MANIFEST_FILE, CONFIG_FILE, RESUMES_FILE, TOKENIZER_DIR

# Keys that cannot change the weights a run trains: allowed on resume, and recorded.
FREE = ("name", "evals", "train.log_every", "train.eval_every", "train.progress", "train.threads", "train.device",
        "train.ckpt_every", "train.keep_checkpoints", "train.out_dir", "train.collective_timeout_s",
        "data.num_workers", "data.embed_batch_size", "data.dev", "data.dev_cache",
        "train.init_from", "train.init_parts")  # a warm start is the first step's weights: resume loads its own
# Where the cached training data lives: judged by the cache's manifest, not by the path.
CACHE_LOCATION = ("data.train_cache", "data.cache_root")
# Manifest fields that say how a cache was made, not what it holds.
MANIFEST_FREE = ("world_size",)


class ResumeMismatch(ValueError):
    """``--resume`` with settings or data other than the checkpoint's; the message lists each."""


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """A config dataclass (or a mapping) as ``{dotted.key: value}``; ``evals`` stays one value."""
    tree = OmegaConf.to_container(OmegaConf.structured(cfg)) if not isinstance(cfg, dict) else cfg
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key != "evals" and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _free(key: str, judged_by_manifest: bool) -> bool:
    return key in FREE or (judged_by_manifest and key in CACHE_LOCATION)


def _show(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, str) else repr(v)
    return text if len(text) <= 120 else text[:117] + "..."


@dataclass
class ResumeCheck:
    """The outcome of comparing a resumed run with its checkpoint (refusals raise before this exists)."""
    checkpoint: Path
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # allowed keys: (checkpoint's, now)
    recorded_manifest: dict | None = None

    def check_data(self, cache_folder: Path) -> None:
        """The training cache must hold the data the checkpoint was trained on (same manifest)."""
        if self.recorded_manifest is None:
            return
        now = json.loads((Path(cache_folder) / MANIFEST).read_text())
        keys = sorted((set(now) | set(self.recorded_manifest)) - set(MANIFEST_FREE))
        diffs = [f"  cache_manifest.{k}: {_show(self.recorded_manifest.get(k))} (checkpoint) -> {_show(now.get(k))} "
                 f"(now, {cache_folder})" for k in keys if now.get(k) != self.recorded_manifest.get(k)]
        if diffs:
            raise ResumeMismatch(f"cannot resume from {self.checkpoint}: the training cache is not the data it "
                                 "was trained on:\n" + "\n".join(diffs) + "\nresume with the checkpoint's cache "
                                 "(data.train / data.train_cache), or start a new run in another train.out_dir")

    def record(self, run_dir: Path, step: int) -> dict:
        """Append this resume to the run's resumes.json: the step, the checkpoint, the keys changed."""
        path = Path(run_dir) / RESUMES_FILE
        history = json.loads(path.read_text())["resumes"] if path.is_file() else []
        entry = {"step": step, "checkpoint": str(self.checkpoint.relative_to(run_dir)),
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                 "changed": {k: {"checkpoint": a, "now": b} for k, (a, b) in self.changed.items()}}
        path.write_text(json.dumps({"resumes": history + [entry]}, indent=2))
        return entry


def _recorded(checkpoint: Path, run_dir: Path, name: str) -> Path | None:
    for folder in (checkpoint, run_dir):  # checkpoints of older versions hold no copy: the run's file
        if (folder / name).is_file():
            return folder / name
    return None


def check_resume(run_dir: Path, cfg: ExperimentConfig) -> ResumeCheck:
    """Refuse ``--resume`` without a checkpoint or with a training setting other than the checkpoint's.

    On the cached path, where the checkpoint recorded its cache's manifest, the cache's location keys
    are judged by ``ResumeCheck.check_data`` against that manifest instead of by their paths.
    """
    run_dir = Path(run_dir)
    cached = cfg.model.image.lock == "L" and cfg.data.use_cache and not cfg.data.stream
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise ResumeMismatch(f"--resume: {run_dir} holds no checkpoint to resume from (no checkpoints/step_*/"
                             "state.pt); run without --resume to start a new run there")
    saved_path = _recorded(ckpt, run_dir, CONFIG_FILE)
    if saved_path is None:
        raise ResumeMismatch(f"--resume: neither {ckpt} nor {run_dir} holds {CONFIG_FILE}: the settings the "
                             "checkpoint was made with are unknown, so resuming cannot be checked")
    try:
        saved = flatten(load_config(saved_path))
    except ConfigError as e:
        raise ResumeMismatch(f"--resume: the checkpoint's settings cannot be read ({e})") from None
    now = flatten(cfg)
    own_tokenizer = (run_dir / TOKENIZER_DIR / "tokenizer.json").is_file()
    if own_tokenizer and saved.get("model.text.tokenizer") == TOKENIZER_DIR:
        now["model.text.tokenizer"] = TOKENIZER_DIR  # the run's own trained vocabulary is used either way
    manifest = _recorded(ckpt, run_dir, CACHE_MANIFEST_FILE) if cached else None
    changed = {k: (saved.get(k), now.get(k)) for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)}
    refused = {k: v for k, v in changed.items() if not _free(k, manifest is not None)}
    if refused:
        lines = [f"  {k}: {_show(a)} (checkpoint) -> {_show(b)} (now)" for k, (a, b) in refused.items()]
        why = ("\n(train.steps sets the learning-rate schedule: warmup and cosine decay over train.steps)"
               if "train.steps" in refused else "")
        raise ResumeMismatch(f"cannot resume {run_dir} from {ckpt.name} with other training settings than it was "
                             "made with:\n" + "\n".join(lines) + why + "\nthese change what is trained: resume "
                             "with the checkpoint's values, or start a new run in another train.out_dir")
    return ResumeCheck(ckpt, changed, json.loads(manifest.read_text()) if manifest else None)
