"""Parity proof (issue 21, item 4): ``littune eval zeroshot`` / ``eval retrieval`` on a
``littune export --format open_clip`` folder and on the run it came from give CLIP_benchmark 1.6.2's
figures, computed by its own metric code through open_clip on that folder, within 0.001.

Always on small generated data (tiny towers); on real photos and captions from ../shared/data
(the demo's towers, EfficientNet-Lite0 and MiniLM) when present: a deterministic slice of flowers
test (12 photos per class, CLIP's 7 simple templates) and Flickr8k test (its first 40 images) by
default, the whole splits (flowers with CLIP's 80 templates) with LITTUNE_PARITY_FULL=1
(docs/evaluation.md).
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from littune.cli import main
from littune.evaluate.templates import get_templates

from tests.infer.test_open_clip import real_export  # noqa: F401  (the demo's towers, random heads, exported)

from . import clip_benchmark_ref as cb

TOL = 1e-3
FULL = os.environ.get("LITTUNE_PARITY_FULL") == "1"


def _eval(capsys, *args) -> dict:
    assert main(["eval", *args, "--json", "--no-progress"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _check_zeroshot(capsys, run: Path, export: Path, images: Path, templates: str, cache: Path) -> dict:
    classes = sorted(p.name for p in images.iterdir() if p.is_dir())
    ref = cb.zeroshot(export, images, [c.replace("_", " ") for c in classes], get_templates(templates))
    for spec in (str(run), f"local-dir:{export}"):
        m = _eval(capsys, "zeroshot", "--model", spec, "--images", str(images), "--templates", templates,
                  "--cache", str(cache))
        assert abs(m["top1"] - ref["acc1"]) <= TOL, (spec, m["top1"], ref)
        assert abs(m["mean_per_class"] - ref["mean_per_class_recall"]) <= TOL, (spec, m, ref)
        if len(classes) >= 5:
            assert abs(m["top5"] - ref["acc5"]) <= TOL, (spec, m["top5"], ref)
            assert ("top5" in m.get("trivial", {})) == (len(classes) == 5)
    return {"littune": m, "clip_benchmark": ref}


def _check_retrieval(capsys, run: Path, export: Path, data: str, items, cache: Path) -> dict:
    ref = cb.retrieval(export, items)
    for spec in (str(run), f"local-dir:{export}"):  # the export's once stopped at "no definition to fingerprint"
        m = _eval(capsys, "retrieval", "--model", spec, "--data", data, "--cache", str(cache))
        assert m["n_images"] == len(items) and m["n_texts"] == sum(len(c) for _, c in items)
        for k in (1, 5, 10):
            assert abs(m[f"i2t_r{k}"] - ref[f"text_retrieval_recall@{k}"]) <= TOL, (spec, k, m, ref)
            assert abs(m[f"t2i_r{k}"] - ref[f"image_retrieval_recall@{k}"]) <= TOL, (spec, k, m, ref)
    return {"littune": m, "clip_benchmark": ref}


# ---- small generated data: always -----------------------------------------------------------------
def _generated(root: Path, n_classes: int = 6, per_class: int = 5) -> tuple[Path, list[tuple[Path, list[str]]], Path]:
    """Class folders of noisy coloured photos, and a captions CSV (two captions per image)."""
    rng = np.random.default_rng(0)
    colours = ["red", "green", "blue", "yellow", "purple", "orange"][:n_classes]
    items = []
    for c, name in enumerate(colours):
        (root / "classes" / name).mkdir(parents=True)
        base = rng.integers(0, 256, 3)
        for i in range(per_class):
            pixels = np.clip(base + rng.normal(0, 60, (40 + 3 * i, 48, 3)), 0, 255).astype(np.uint8)
            path = root / "classes" / name / f"{i}.jpg"
            Image.fromarray(pixels).save(path, quality=95)
            items.append((path, [f"a {name} photo number {i}", f"noise around {name} colour"]))
    data = root / "captions.csv"
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption"])
        w.writerows([(str(p), cap) for p, caps in items for cap in caps])
    return root / "classes", items, data


def test_generated_data_gives_clip_benchmarks_figures(tiny_export, capsys, torch_engine):
    run, export, root = tiny_export
    images, items, data = _generated(root / "data")
    _check_zeroshot(capsys, run, export, images, "clip_simple", root / "cache")
    _check_retrieval(capsys, run, export, str(data), items, root / "cache")


def test_five_classes_report_top5_like_clip_benchmark_marked_trivial(tiny_export, capsys, tmp_path, torch_engine):
    run, export, _ = tiny_export
    images, _, _ = _generated(tmp_path, n_classes=5, per_class=2)
    out = _check_zeroshot(capsys, run, export, images, "single", tmp_path / "cache")
    assert out["clip_benchmark"]["acc5"] == out["littune"]["top5"] == 1.0
    # The printed table and the report carry the mark too.
    assert main(["eval", "zeroshot", "--model", str(run), "--images", str(images), "--templates", "single",
                 "--no-progress", "--cache", str(tmp_path / "cache"), "--report", str(tmp_path / "report")]) == 0
    top5 = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("top5")]
    assert len(top5) == 1 and "1.0000  (trivial: K=5 equals the 5 classes" in top5[0]
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| top5 | 1.0000 (trivial, see below) |" in report and "every query is a hit by construction" in report


# ---- real photos and captions: when ../shared/data is there -----------------------------------------
@pytest.mark.data
def test_flowers_test_gives_clip_benchmarks_figures(real_export, shared_data, capsys, torch_engine):  # noqa: F811
    run, export, root = real_export["run"], real_export["folder"], real_export["root"]
    test = shared_data / "flowers" / "test"
    images = test
    if not FULL:  # 12 photos per class, linked
        images = root / "flowers_slice"
        for cls in sorted(os.listdir(test)):
            (images / cls).mkdir(parents=True, exist_ok=True)
            for name in sorted(os.listdir(test / cls))[:12]:
                (images / cls / name).symlink_to(test / cls / name)
    # CLIP's 80 templates on the whole split; its 7 on the slice (the same code path, a sixth of the prompts).
    out = _check_zeroshot(capsys, run, export, images, "clip" if FULL else "clip_simple", root / "cache")
    print(f"\nflowers test ({'all' if FULL else '12 per class'}): {out}")


@pytest.mark.data
def test_flickr8k_test_gives_clip_benchmarks_figures(real_export, shared_data, capsys, torch_engine):  # noqa: F811
    run, export, root = real_export["run"], real_export["folder"], real_export["root"]
    folder = shared_data / "flickr8k"
    names = (folder / "splits" / "test.txt").read_text().split()
    names = names if FULL else names[:40]
    wanted = set(names)
    captions: dict[str, list[str]] = {n: [] for n in names}
    with open(folder / "captions.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["image"] in wanted:
                captions[row["image"]].append(row["caption"].strip())
    data = root / "flickr8k_test.csv"
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption"])
        w.writerows([(str(folder / "images" / n), c) for n in names for c in captions[n]])
    items = [(folder / "images" / n, captions[n]) for n in names]
    out = _check_retrieval(capsys, run, export, str(data), items, root / "cache")
    print(f"\nFlickr8k test ({len(names)} images): {out}")


def test_models_littune_did_not_train_read_their_own_tokens(tiny_export, tmp_path):
    """An open_clip folder without littune's record gets texts exactly as given (CLIP_benchmark's
    tokens); a littune export keeps the canonical form its model was trained on."""
    import shutil

    from littune.infer.open_clip_model import load_open_clip

    _, export, _ = tiny_export
    foreign = tmp_path / "foreign"
    shutil.copytree(export, foreign)
    config = json.loads((foreign / "open_clip_config.json").read_text())
    del config["littune"]
    (foreign / "open_clip_config.json").write_text(json.dumps(config))
    ours, theirs = load_open_clip(export).text.tokenizer, load_open_clip(foreign).text.tokenizer
    assert ours.canonical and not theirs.canonical
    assert ours.fingerprint() != theirs.fingerprint()  # text caches of the two never mix
    seen = []
    encode = ours._encode
    theirs._encode = ours._encode = lambda texts: seen.append(texts) or encode(texts)
    theirs(["a  dog runs .", "Café ( red )"])
    assert seen == [["a  dog runs .", "Café ( red )"]]  # not "a dog runs." / "Café (red)"
    seen.clear()
    ours(["a  dog runs ."])
    assert seen == [["a dog runs."]]
