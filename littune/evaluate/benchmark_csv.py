"""Evaluation results as one table in CLIP_benchmark's CSV shape (its ``clip_benchmark build``).

One row per evaluation: ``dataset`` (the evaluation's name in the config), ``model``, ``pretrained``,
``task`` and ``language``, then the metrics under CLIP_benchmark 1.6.2's names:

    zeroshot_classification  acc1, acc5, mean_per_class_recall     (littune: top1, top5, mean_per_class)
    zeroshot_retrieval       image_retrieval_recall@K (text->image: littune's t2i_rK),
                             text_retrieval_recall@K (image->text: littune's i2t_rK)
    linear_probe             lp_acc1                                 (littune's probe top1)

A metric the rule of ``degenerate.py`` omits is written as ``nan`` (CLIP_benchmark writes NaN for
top-5 under 5 classes); the ``trivial`` column lists the row's metrics kept but trivial, so a 1.0 that
measures nothing never stands unmarked. Columns absent from every row are left out.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Mapping

__all__ = ["benchmark_rows", "write_benchmark_csv", "COLUMNS"]

TASKS = {"zeroshot": "zeroshot_classification", "retrieval": "zeroshot_retrieval", "probe": "linear_probe"}
# littune metric -> CLIP_benchmark column, per kind
NAMES = {
    "zeroshot": {"top1": "acc1", "top5": "acc5", "mean_per_class": "mean_per_class_recall"},
    "retrieval": {f"{d}_r{k}": f"{'image' if d == 't2i' else 'text'}_retrieval_recall@{k}"
                  for k in (1, 5, 10) for d in ("t2i", "i2t")},
    "probe": {"top1": "lp_acc1"},
}
COLUMNS = ("dataset", "model", "pretrained", "task", "language",
           *[c for names in NAMES.values() for c in names.values()], "trivial")


def benchmark_rows(results: Mapping[str, Mapping[str, Any]], kinds: Mapping[str, str], model: str,
                   pretrained: str = "") -> list[dict[str, Any]]:
    """``results`` {eval name: metrics} of evaluations of ``kinds`` {eval name: kind} -> CSV rows."""
    rows = []
    for name, m in results.items():
        kind = kinds[name]
        row: dict[str, Any] = {"dataset": name, "model": model, "pretrained": pretrained, "task": TASKS[kind],
                               "language": "en"}
        for ours, theirs in NAMES[kind].items():
            if ours in m:
                row[theirs] = m[ours]
            elif ours in m.get("omitted", {}):
                row[theirs] = math.nan
        row["trivial"] = ";".join(NAMES[kind].get(k, k) for k in m.get("trivial", {}))
        rows.append(row)
    return rows


def write_benchmark_csv(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` with the columns any row has, in ``COLUMNS`` order."""
    present = [c for c in COLUMNS if any(c in r for r in rows)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=present, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path
