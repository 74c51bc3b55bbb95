"""Plots and a markdown report for LiT evaluation results.

Figures are drawn with matplotlib's object-oriented API on an Agg canvas
(``matplotlib.figure.Figure``), never through ``pyplot``: no display is needed
and the caller's global matplotlib backend/state is left untouched.

Metric names follow the evaluators in this package: retrieval ``i2t_r{K}`` /
``t2i_r{K}`` (LiT arXiv 2111.07991 reports R@1 on Flickr/COCO), zero-shot
``top1`` / ``per_class`` / ``confusion``; training logs are JSONL rows with
``step`` plus ``loss``, ``temperature``, ``lr`` and, on eval steps, ``dev/...``.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "save_figure",
    "load_metrics_jsonl",
    "plot_training_curves",
    "plot_retrieval_bars",
    "plot_confusion",
    "plot_per_class",
    "write_report",
]

_RECALL_KEY = re.compile(r"^(i2t|t2i)_r(\d+)$")


def save_figure(fig: Figure, out_png: str | os.PathLike) -> Path:
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    return out


def load_metrics_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a metrics log: one JSON object per line, blank lines skipped."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
    return rows


def _series(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) for rows that have both ``step`` and a finite number under ``key``."""
    xs, ys = [], []
    for r in rows:
        v = r.get(key)
        if isinstance(v, (int, float)) and "step" in r and math.isfinite(v):
            xs.append(r["step"])
            ys.append(float(v))
    return xs, ys


def plot_training_curves(metrics: str | os.PathLike | Iterable[Mapping], out_png: str | os.PathLike) -> Path:
    """Loss, temperature, learning rate and dev R@1 against step; absent series are skipped.

    ``metrics`` is a JSONL path or a list of row dicts. Dev keys are any
    ``PREFIX/i2t_r1`` / ``PREFIX/t2i_r1`` (e.g. ``dev/i2t_r1``).
    """
    rows = load_metrics_jsonl(metrics) if isinstance(metrics, (str, os.PathLike)) else [dict(r) for r in metrics]
    keys = {k for r in rows for k in r}
    dev_keys = sorted(k for k in keys if k.rsplit("/", 1)[-1] in ("i2t_r1", "t2i_r1") and "/" in k)
    panels = [(title, ks) for title, ks in [
        ("loss", ["loss"]),
        ("temperature", ["temperature"]),
        ("learning rate", ["lr"]),
        ("dev R@1", dev_keys),
    ] if any(_series(rows, k)[0] for k in ks)]
    if not panels:
        raise ValueError(
            "no plottable series: rows need 'step' plus at least one of loss, temperature, lr, "
            f"*/i2t_r1, */t2i_r1 (keys seen: {sorted(keys)[:20]})"
        )
    fig = Figure(figsize=(4.2 * len(panels), 3.4))
    for i, (title, ks) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for k in ks:
            xs, ys = _series(rows, k)
            if xs:
                ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=k)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if title == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        if len(ks) > 1:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out_png)


def plot_retrieval_bars(metrics: Mapping, out_png: str | os.PathLike, title: str = "retrieval") -> Path:
    """Grouped bars of Recall@K (in %) for image->text and text->image."""
    recalls: dict[str, dict[int, float]] = {"i2t": {}, "t2i": {}}
    for key, value in metrics.items():
        m = _RECALL_KEY.match(key)
        if m:
            recalls[m.group(1)][int(m.group(2))] = 100.0 * float(value)
    ks = sorted(set(recalls["i2t"]) | set(recalls["t2i"]))
    if not ks:
        raise ValueError(f"no i2t_r{{K}} / t2i_r{{K}} keys in metrics (keys: {sorted(metrics)[:20]})")
    fig = Figure(figsize=(1.2 + 1.3 * len(ks), 3.6))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(ks))
    width = 0.38
    for offset, (direction, label) in zip((-width / 2, width / 2), (("i2t", "image→text"), ("t2i", "text→image"))):
        vals = [recalls[direction].get(k, np.nan) for k in ks]
        bars = ax.bar(x + offset, vals, width, label=label)
        ax.bar_label(bars, labels=["" if np.isnan(v) else f"{v:.1f}" for v in vals], fontsize=8)
    ax.set_xticks(x, [f"R@{k}" for k in ks])
    ax.set_ylabel("recall (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out_png)


def plot_confusion(
    confusion, classnames: list[str], out_png: str | os.PathLike, annotate_max_classes: int = 40
) -> Path:
    """Confusion matrix heat map (rows = true class); counts written in cells when
    there are at most ``annotate_max_classes`` classes (beyond that they are unreadable)."""
    cm = np.asarray(confusion, dtype=np.int64)
    c = len(classnames)
    if cm.shape != (c, c):
        raise ValueError(f"confusion has shape {cm.shape}, expected ({c}, {c}) for {c} classnames")
    side = min(max(4.0, 0.35 * c + 2.0), 40.0)
    fig = Figure(figsize=(side + 1.0, side))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if c <= annotate_max_classes:
        ax.set_xticks(range(c), classnames, rotation=90, fontsize=8)
        ax.set_yticks(range(c), classnames, fontsize=8)
        threshold = cm.max() / 2 if cm.max() > 0 else 1
        for i in range(c):
            for j in range(c):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > threshold else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix")
    fig.tight_layout()
    return save_figure(fig, out_png)


def plot_per_class(per_class: Mapping[str, float], out_png: str | os.PathLike, title: str = "per-class accuracy") -> Path:
    """Horizontal bars of per-class accuracy (in %), sorted worst to best."""
    if not per_class:
        raise ValueError("per_class is empty")
    items = sorted(per_class.items(), key=lambda kv: (kv[1], kv[0]))
    names = [k for k, _ in items]
    vals = [100.0 * float(v) for _, v in items]
    fig = Figure(figsize=(6.0, min(max(2.5, 0.22 * len(items) + 1.0), 120.0)))
    ax = fig.add_subplot(1, 1, 1)
    ax.barh(range(len(items)), vals, color="tab:blue")
    ax.set_yticks(range(len(items)), names, fontsize=7)
    ax.set_xlim(0, 100)
    ax.set_xlabel("accuracy (%)")
    ax.set_title(f"{title} (mean {np.mean(vals):.1f}%)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, out_png)


def _jsonable(obj):
    """Plain-JSON copy: numpy/torch scalars and arrays to Python, NaN/inf to None."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy arrays/scalars, torch tensors
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1e4 else f"{v:.4g}"
    return str(v).replace("|", "\\|")


def _table(metrics: Mapping, max_rows: int = 200) -> list[str]:
    """Markdown table of scalar metrics; small dicts become their own table, lists are referenced."""
    lines = ["| metric | value |", "|---|---|"]
    extra: list[str] = []
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            if value and len(value) <= max_rows and all(not isinstance(v, (Mapping, list)) for v in value.values()):
                extra += ["", f"**{key}**", "", f"| {key} | value |", "|---|---|"]
                extra += [f"| {_fmt(k)} | {_fmt(v)} |" for k, v in value.items()]
            else:
                lines.append(f"| {key} | ({len(value)} entries, see metrics.json) |")
        elif isinstance(value, (list, tuple)):
            lines.append(f"| {key} | (list of {len(value)}, see metrics.json) |")
        else:
            trivial = " (trivial, see below)" if key in metrics.get("trivial", {}) else ""  # degenerate.py's mark
            lines.append(f"| {key} | {_fmt(value)}{trivial} |")
    return lines + extra


def write_report(
    out_dir: str | os.PathLike, title: str, sections: Mapping[str, Mapping], plots: Iterable[str | os.PathLike] = ()
) -> Path:
    """Write ``out_dir/report.md`` (one metrics table per section, plots embedded by
    relative link) and ``out_dir/metrics.json`` (all sections, in full). Returns the report path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", ""]
    for name, metrics in sections.items():
        if not isinstance(metrics, Mapping):
            raise TypeError(f"section {name!r} must be a dict of metrics, got {type(metrics).__name__}")
        lines += [f"## {name}", "", *_table(metrics), ""]
    plots = [Path(p) for p in plots]
    if plots:
        lines += ["## Plots", ""]
    for p in plots:
        if not p.is_file():
            raise FileNotFoundError(f"plot file not found: {p}")
        rel = Path(os.path.relpath(p.resolve(), out.resolve())).as_posix()
        lines += [f"![{p.stem}]({rel})", ""]
    (out / "metrics.json").write_text(json.dumps(_jsonable(sections), indent=2) + "\n", encoding="utf-8")
    report = out / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    return report
