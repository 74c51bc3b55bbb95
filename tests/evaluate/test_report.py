"""Report: plots are written and readable, report.md / metrics.json hold the metrics."""

import json

import pytest
from PIL import Image

from littune.evaluate.report import (
    plot_confusion,
    plot_per_class,
    plot_retrieval_bars,
    plot_training_curves,
    write_report,
)


def _check_png(path, min_side=150):
    assert path.is_file() and path.stat().st_size > 5_000
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and min(im.size) >= min_side


def test_training_curves_from_jsonl(tmp_path):
    log = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "loss": 5.0 / (s + 1), "temperature": 0.07 + s / 1e3, "lr": 1e-3} for s in range(0, 50, 5)]
    rows[4].update({"dev/i2t_r1": 0.2, "dev/t2i_r1": 0.15})
    rows[9].update({"dev/i2t_r1": 0.4, "dev/t2i_r1": 0.3})
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    _check_png(plot_training_curves(log, tmp_path / "curves.png"))


def test_training_curves_skip_missing_series(tmp_path):
    out = plot_training_curves([{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}], tmp_path / "sub" / "c.png")
    _check_png(out)
    with pytest.raises(ValueError, match="no plottable series"):
        plot_training_curves([{"step": 1, "acc": 0.5}], tmp_path / "none.png")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 1}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2"):
        plot_training_curves(bad, tmp_path / "x.png")


def test_metric_plots(tmp_path):
    m = {"i2t_r1": 0.5, "i2t_r5": 0.8, "i2t_r10": 0.9, "t2i_r1": 0.4, "t2i_r5": 0.7, "t2i_r10": 0.85, "n_images": 10}
    _check_png(plot_retrieval_bars(m, tmp_path / "bars.png"))
    names = ["cat", "dog", "fox"]
    _check_png(plot_confusion([[5, 1, 0], [2, 3, 1], [0, 0, 6]], names, tmp_path / "cm.png"))
    _check_png(plot_per_class({"cat": 0.83, "dog": 0.5, "fox": 1.0}, tmp_path / "pc.png"))
    with pytest.raises(ValueError, match="expected \\(3, 3\\)"):
        plot_confusion([[1, 0], [0, 1]], names, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="i2t_r"):
        plot_retrieval_bars({"top1": 0.3}, tmp_path / "bad.png")


def test_write_report(tmp_path):
    plots_dir = tmp_path / "run" / "plots"
    bars = plot_retrieval_bars({"i2t_r1": 2 / 3, "t2i_r1": 0.5}, plots_dir / "bars.png")
    sections = {
        "retrieval (flickr8k test)": {"i2t_r1": 2 / 3, "t2i_r1": 0.5, "n_images": 1000},
        "zero-shot": {"top1": 0.8125, "per_class": {"cat": 0.75, "dog": 0.875},
                      "confusion": [[3, 1], [1, 7]], "nan_metric": float("nan")},
    }
    report = write_report(tmp_path / "run", "LiT eval", sections, [bars])
    text = report.read_text()
    assert report.name == "report.md" and text.startswith("# LiT eval")
    for needle in ("## retrieval (flickr8k test)", "| i2t_r1 | 0.6667 |", "| n_images | 1000 |",
                   "| top1 | 0.8125 |", "| cat | 0.7500 |", "see metrics.json", "](plots/bars.png)"):
        assert needle in text, needle
    data = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert data["zero-shot"]["confusion"] == [[3, 1], [1, 7]]
    assert data["zero-shot"]["nan_metric"] is None  # strict JSON
    assert data["retrieval (flickr8k test)"]["i2t_r1"] == pytest.approx(2 / 3)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        write_report(tmp_path / "run", "t", sections, [tmp_path / "missing.png"])
