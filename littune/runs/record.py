"""What a run records besides its weights: config.yaml, summary.json, the caches it trained on."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ..config import ExperimentConfig, to_yaml
from .files import CACHE_MANIFEST_FILE, CONFIG_FILE, REPORT_DIR, SUMMARY_FILE


def write_config(run: Path, cfg: ExperimentConfig) -> None:
    (Path(run) / CONFIG_FILE).write_text(to_yaml(cfg))


def write_summary(run: Path, summary: dict[str, Any]) -> None:
    (Path(run) / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))


def read_summary(run: Path) -> dict[str, Any]:
    """summary.json of a finished run ({} when training has not finished)."""
    path = Path(run) / SUMMARY_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def read_report_metrics(run: Path) -> dict[str, Any]:
    """report/metrics.json of a run ({evaluation name: metrics}; {} when it has no report)."""
    path = Path(run) / REPORT_DIR / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def keep_cache_manifest(run: Path, cache_folder: Path, name: str = CACHE_MANIFEST_FILE) -> None:
    """Copy the training cache's manifest into the run: the record of the data it saw."""
    shutil.copy(Path(cache_folder) / "manifest.json", Path(run) / name)
