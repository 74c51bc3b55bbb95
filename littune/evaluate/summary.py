"""One report for any set of evaluation results: markdown tables plus the plots that fit them.

Retrieval results get R@K bars, zero-shot results a confusion matrix and per-class accuracy,
and a run directory with ``metrics.jsonl`` its training curves (loss, temperature, dev R@1).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

from .report import plot_confusion, plot_per_class, plot_retrieval_bars, plot_training_curves, write_report

_DROP = ("confusion", "skipped", "classnames", "aliases", "predictions")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower()


def build_report(out_dir: str | Path, title: str, results: Mapping[str, Mapping],
                 run_dir: str | Path | None = None) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots: list[Path] = []
    if run_dir is not None and (Path(run_dir) / "metrics.jsonl").is_file():
        plots.append(plot_training_curves(Path(run_dir) / "metrics.jsonl", out / "training_curves.png"))
    sections = {}
    for name, m in results.items():
        slug = _slug(name)
        if "i2t_r1" in m:
            plots.append(plot_retrieval_bars(m, out / f"{slug}_recall.png", title=name))
        if "confusion" in m and "classnames" in m:
            plots.append(plot_confusion(m["confusion"], m["classnames"], out / f"{slug}_confusion.png"))
        if isinstance(m.get("per_class"), Mapping):
            plots.append(plot_per_class(m["per_class"], out / f"{slug}_per_class.png", title=name))
        sections[name] = {k: v for k, v in m.items() if k not in _DROP}
    report = write_report(out, title, sections, plots)
    # metrics.json keeps everything, including confusion matrices and skipped-image lists.
    import json

    from .report import _jsonable

    (out / "metrics.json").write_text(json.dumps(_jsonable(dict(results)), indent=2) + "\n")
    return report
