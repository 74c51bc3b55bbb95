"""Run a study: train each setting, evaluate it, keep its result; resume whatever is half done.

Each setting lives in ``out_dir/<setting>/``: the training run (config, checkpoints, metrics) plus
``study_setting.json`` (the overrides it was started with) and, once evaluated, ``result.json``.
A rerun skips finished settings, resumes a setting from its last checkpoint, and refuses a
setting whose overrides changed since it started (its half-run would mix two configs).
Settings can run one after another in one process, or as separate processes (``only=[name]``),
then ``write_study_report`` assembles whatever has finished.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Iterable

from ..config import ConfigError, ExperimentConfig
from ..evaluate.retrieval import RECALL_KEYS
from ..runs import read_summary
from ..runs.files import INFO_FILE, MODEL_FILE
from ..runs.target import RUN_NAMES, check_output
from .config import StudyConfig
from .report import write_study_report

RESULT = "result.json"
SETTING = "study_setting.json"
STUDY_FILES = ("study.md", "study.json", "study_metrics.png", "study_accuracy_time.png", "study_frontier.png")


def _setting_marker(study: StudyConfig, name: str) -> dict:
    return {"study": study.name, "setting": name, "overrides": study.overrides_of(name),
            "base": study.base}


def _check_same_setting(study: StudyConfig, name: str) -> None:
    folder = study.run_dir(name)
    marker = folder / SETTING
    want = _setting_marker(study, name)
    if marker.is_file():
        have = json.loads(marker.read_text())
        if have != want:
            raise ConfigError(f"{folder}: setting '{name}' was started with overrides {have['overrides']} "
                              f"(base {have['base']}), the study now says {want['overrides']} (base {want['base']}); "
                              "move that folder away or choose another out_dir")
    else:  # a new setting: never into a model, a run or the user's files
        check_output(folder, "study setting folder", RUN_NAMES - {MODEL_FILE, INFO_FILE},
                     fix="move that folder away or choose another out_dir")
        folder.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(want, indent=2) + "\n")


def train_setting(study: StudyConfig, name: str, cfg: ExperimentConfig, progress: bool = True) -> dict:
    """Train one setting (``cfg``: its experiment; resumed if it has a checkpoint) -> its summary."""
    from ..train import train
    from ..runs import latest_checkpoint

    cfg.train.progress = progress
    _check_same_setting(study, name)
    folder = study.run_dir(name)
    summary = read_summary(folder)
    if summary.get("step") == cfg.train.steps:
        return summary  # trained; only its evaluation is missing
    return train(cfg, resume=latest_checkpoint(folder) is not None)


def flat_metrics(study: StudyConfig, results: dict[str, dict]) -> dict:
    """The table's columns from the suite's results: the first retrieval evaluation's R@K, the
    first zero-shot evaluation's ``zeroshot_*`` and the first probe's ``probe_top1``; every
    evaluation's scalars stay under ``evals``."""
    out: dict = {}
    for name, m in results.items():
        kind = study.evals[name]["kind"]
        if kind == "retrieval" and "i2t_r1" not in out:
            out.update({k: m.get(k) for k in RECALL_KEYS})  # None: omitted (evaluate/degenerate.py)
        elif kind == "zeroshot" and "zeroshot_top1" not in out:
            out.update({"zeroshot_top1": m["top1"], "zeroshot_top5": None if "top5" in m.get("trivial", {}) else m.get("top5"),
                        "zeroshot_per_class": m["per_class"]})
        elif kind == "probe" and "probe_top1" not in out:
            out["probe_top1"] = m["top1"]
    return out


def evaluate_setting(study: StudyConfig, name: str, progress: bool = True) -> dict:
    """The study's evaluation suite on one trained setting: {metric: value}."""
    from ..evaluate.suite import EvalSuite
    from ..runs import load_run

    model, _ = load_run(study.run_dir(name))
    suite = EvalSuite.from_evals(study.evals, study.cache_root, progress)
    t0 = time.time()
    results = suite.run(model)
    scalars = suite.scalars(results)
    return {**flat_metrics(study, results),
            "evals": {n: {k.split("/", 1)[1]: v for k, v in scalars.items() if k.startswith(n + "/")} for n in results},
            "eval_s": round(time.time() - t0, 1)}


def run_setting(study: StudyConfig, name: str, progress: bool = True) -> dict:
    folder = study.run_dir(name)
    if (folder / RESULT).is_file():
        _check_same_setting(study, name)
        return json.loads((folder / RESULT).read_text())
    cfg = study.experiment(name)
    summary = train_setting(study, name, cfg, progress)
    result = {
        "setting": name,
        "image": f"{cfg.model.image.name} ({cfg.model.image.lock})",
        "text": f"{cfg.model.text.name} ({cfg.model.text.lock})",
        "image_lock": cfg.model.image.lock, "text_lock": cfg.model.text.lock,
        "steps": summary["step"], "batch_size": cfg.train.batch_size,
        "train_s": summary.get("train_s"), "cached": cfg.model.image.lock == "L" and cfg.data.use_cache,
        "temperature": summary["temperature"],
        **evaluate_setting(study, name, progress),
    }
    tmp = folder / (RESULT + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(folder / RESULT)  # atomic: a result file is always whole
    return result


def run_study(study: StudyConfig, only: Iterable[str] | None = None, progress: bool = True) -> dict[str, dict]:
    """Train and evaluate the settings (``only``: a subset, e.g. one per process); then the report."""
    names = list(only) if only else list(study.settings)
    root = Path(study.out_dir)
    earlier = [p.parent.name for p in root.glob(f"*/{SETTING}")]  # settings of this study's earlier runs, dropped since
    check_output(root, "out_dir", (*study.settings, *earlier, *STUDY_FILES),
                 fix="choose another out_dir (a study writes its settings' folders and report there)")
    for n in names:
        if n not in study.settings:
            raise ConfigError(f"study '{study.name}' has no setting '{n}' (settings: {', '.join(study.settings)})")
    for i, n in enumerate(names):
        if progress:
            print(f"[study {study.name}] setting {n} ({i + 1}/{len(names)})", file=sys.stderr, flush=True)
        run_setting(study, n, progress)
    results = collect_results(study)
    write_study_report(study, results)
    return results


def collect_results(study: StudyConfig) -> dict[str, dict]:
    """Finished settings' results, in the study's order."""
    out = {}
    for n in study.settings:
        f = study.run_dir(n) / RESULT
        if f.is_file():
            out[n] = json.loads(f.read_text())
    return out
