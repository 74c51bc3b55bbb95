"""The study's report: one markdown table and two plots over the finished settings.

    study.md                 setting, towers, steps, training time, retrieval R@1/R@5, zero-shot top-1
    study_metrics.png        zero-shot top-1 and retrieval R@1 per setting (grouped bars)
    study_accuracy_time.png  zero-shot top-1 and t2i R@1 against training wall time (log scale)
    study_frontier.png       zero-shot top-1 against image->text R@1, one point per setting (the trade-off)
    study.json               every setting's full result
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..evaluate.report import save_figure
from .config import StudyConfig

_BARS = (("zeroshot_top1", "zero-shot top-1"), ("i2t_r1", "image→text R@1"), ("t2i_r1", "text→image R@1"))


def _fmt(v, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _minutes(s) -> str:
    return "–" if s is None else f"{s / 60:.1f}"


def study_table(results: dict[str, dict]) -> str:
    head = ("| setting | image tower | text tower | steps × batch | train min | i2t R@1 | i2t R@5 | t2i R@1 | t2i R@5 "
            "| zero-shot top-1 |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in results.items():
        lines.append(f"| {name} | {r['image']} | {r['text']} | {r['steps']} × {r['batch_size']} | {_minutes(r.get('train_s'))} "
                     f"| {_fmt(r.get('i2t_r1'))} | {_fmt(r.get('i2t_r5'))} | {_fmt(r.get('t2i_r1'))} | {_fmt(r.get('t2i_r5'))} "
                     f"| {_fmt(r.get('zeroshot_top1'))} |")
    return "\n".join(lines)


def plot_study_metrics(results: dict[str, dict], out_png: Path) -> Path:
    names = list(results)
    keys = [(k, label) for k, label in _BARS if any(results[n].get(k) is not None for n in names)]
    fig = Figure(figsize=(1.6 + 1.3 * len(names), 3.8))
    ax = fig.subplots()
    width = 0.8 / max(1, len(keys))
    x = np.arange(len(names))
    for i, (k, label) in enumerate(keys):
        vals = [results[n].get(k) or 0.0 for n in names]
        bars = ax.bar(x + (i - (len(keys) - 1) / 2) * width, vals, width, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    per_class = next((results[n]["zeroshot_per_class"] for n in names if results[n].get("zeroshot_per_class")), None)
    if per_class:  # zero-shot chance: one over the number of classes
        ax.axhline(1 / len(per_class), ls="--", lw=1, color="gray", label=f"zero-shot chance (1/{len(per_class)})")
    ax.set_xticks(x, names)
    ax.set_ylabel("score")
    ax.set_ylim(0, min(1.0, max([results[n].get(k) or 0 for n in names for k, _ in keys] + [0.1]) * 1.25))
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title("zero-shot and retrieval per setting")
    return save_figure(fig, out_png)


def plot_frontier(results: dict[str, dict], out_png: Path) -> Path:
    """Zero-shot against retrieval, one point per setting: the settings no other beats on both are
    joined (the frontier a recipe is chosen from)."""
    pts = [(r["i2t_r1"], r["zeroshot_top1"], n) for n, r in results.items()
           if r.get("i2t_r1") is not None and r.get("zeroshot_top1") is not None]
    fig = Figure(figsize=(5.6, 4.0))
    ax = fig.subplots()
    ax.scatter([p[0] for p in pts], [p[1] for p in pts])
    for x, y, n in pts:
        ax.annotate(n, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=8)
    front = sorted(p for p in pts if not any(q[0] >= p[0] and q[1] >= p[1] and q[:2] != p[:2] for q in pts))
    ax.plot([p[0] for p in front], [p[1] for p in front], ls="--", lw=1, color="gray", label="frontier")
    ax.set_xlabel("image→text R@1 (first retrieval evaluation)")
    ax.set_ylabel("zero-shot top-1 (first zero-shot evaluation)")
    ax.legend(fontsize=8)
    ax.set_title("zero-shot against retrieval")
    return save_figure(fig, out_png)


def plot_accuracy_vs_time(results: dict[str, dict], out_png: Path) -> Path:
    fig = Figure(figsize=(5.6, 3.8))
    ax = fig.subplots()
    for key, label, marker in (("zeroshot_top1", "zero-shot top-1", "o"), ("t2i_r1", "text→image R@1", "s")):
        pts = [(r["train_s"] / 60, r[key], n) for n, r in results.items() if r.get(key) is not None and r.get("train_s")]
        if not pts:
            continue
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=label)
        for t, v, n in pts:
            ax.annotate(n, (t, v), textcoords="offset points", xytext=(4, 3), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("training wall time (minutes, log scale)")
    ax.set_ylabel("score")
    ax.legend(fontsize=8)
    ax.set_title("accuracy against training time")
    return save_figure(fig, out_png)


def write_study_report(study: StudyConfig, results: dict[str, dict]) -> Path:
    """study.md, the plots and study.json from the finished settings' ``results`` (in study order)."""
    out = Path(study.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    missing = [n for n in study.settings if n not in results]
    lines = [f"# Study: {study.name}", ""]
    if results:
        lines += [study_table(results), ""]
        lines += ["![metrics](study_metrics.png)", "", "![accuracy against time](study_accuracy_time.png)", "",
                  "![zero-shot against retrieval](study_frontier.png)", ""]
        plot_study_metrics(results, out / "study_metrics.png")
        plot_accuracy_vs_time(results, out / "study_accuracy_time.png")
        plot_frontier(results, out / "study_frontier.png")
    if missing:
        lines += [f"Not finished yet: {', '.join(missing)} (rerun the same command to continue).", ""]
    lines += ["Evaluations: " + "; ".join(f"{n} ({e['kind']}: " + ", ".join(f"{k}={v}" for k, v in e.items()
                                                                           if k != "kind") + ")"
                                          for n, e in study.evals.items()) + ".", "",
              "Common overrides: " + (" ".join(f"`{o}`" for o in study.common) or "none") + "; base: "
              + (f"`{study.base}`" if study.base else "defaults") + ".", ""]
    for n in study.settings:
        lines.append(f"- **{n}**: " + (" ".join(f"`{o}`" for o in study.settings[n]) or "the base config"))
    (out / "study.json").write_text(json.dumps(results, indent=2) + "\n")
    report = out / "study.md"
    report.write_text("\n".join(lines) + "\n")
    return report
