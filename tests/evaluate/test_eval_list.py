"""An evaluation list in a config runs several datasets (ImageNet-style folders with real synset names)
and writes one table in CLIP_benchmark's CSV shape (issue 21, item 7)."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

from littune.cli import main
from littune.config import ConfigError
from littune.evaluate.benchmark_csv import benchmark_rows
from littune.evaluate.classnames import imagenet_synsets
from littune.evaluate.suite import EvalSuite

# ImageNet-R's 200 classes include these five (CLIP_benchmark's imagenet_r_wnids); 264 is the corgi.
R_CLASSES = ["n01443537", "n01484850", "n02113023", "n02113624", "n07753592"]


def _folders(root, names, per_class=2, seed=0):
    rng = np.random.default_rng(seed)
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(root / name / f"{i}.jpg")
    return root


def test_an_evaluation_list_writes_clip_benchmarks_csv(tiny_export, tmp_path, capsys, torch_engine):
    run, export, _ = tiny_export
    synsets = imagenet_synsets()
    val = _folders(tmp_path / "val", [synsets[i] for i in (1, 264, 474, 985, 657, 744)])  # the corgi and the sweater
    r = _folders(tmp_path / "imagenet-r", R_CLASSES, seed=1)
    cfg = tmp_path / "evals.yaml"
    cfg.write_text(f"evals:\n  imagenet1k: {{kind: zeroshot, images: {val}, templates: clip_simple}}\n"
                   f"  imagenet-r: {{kind: zeroshot, images: {r}, templates: clip_simple}}\n"
                   f"  imagenet-r_timm: {{kind: zeroshot, images: {r}, templates: single, classnames: imagenet_timm}}\n")
    out = tmp_path / "results.csv"
    with pytest.warns(UserWarning, match="'missile \\(n03773504\\)' \\(3\\) and 'missile \\(n04008634\\)' \\(4\\)"):  # 657/744 kept, said once
        assert main(["eval", "list", "--model", f"local-dir:{export}", "--config", str(cfg), "--csv", str(out),
                     "--no-progress", "--cache", str(tmp_path / "cache")]) == 0
    rows = list(csv.DictReader(open(out)))
    assert [r["dataset"] for r in rows] == ["imagenet1k", "imagenet-r", "imagenet-r_timm"]
    assert list(rows[0])[:5] == ["dataset", "model", "pretrained", "task", "language"]
    assert {"acc1", "acc5", "mean_per_class_recall", "trivial"} <= set(rows[0])
    assert all(r["task"] == "zeroshot_classification" for r in rows)
    assert 0 <= float(rows[0]["acc1"]) <= float(rows[0]["acc5"]) <= 1 and rows[0]["trivial"] == ""  # 6 classes
    assert float(rows[1]["acc5"]) == 1.0 and rows[1]["trivial"] == "acc5"  # 5 classes: kept, marked
    # The same model through `eval zeroshot` gives the row's figure; CLIP's names were used.
    assert main(["eval", "zeroshot", "--model", f"local-dir:{export}", "--images", str(val), "--templates",
                 "clip_simple", "--json", "--no-progress", "--cache", str(tmp_path / "cache")]) == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert float(rows[0]["acc1"]) == pytest.approx(m["top1"])
    assert m["classnames"] == ["goldfish", "Cardigan Welsh Corgi", "cardigan", "missile (n03773504)",
                              "missile (n04008634)", "daisy"]


def test_rows_mark_omitted_and_retrieval_names():
    rows = benchmark_rows({"tiny": {"top1": 0.5, "mean_per_class": 0.5, "omitted": {"top5": "K=5 exceeds"}},
                           "f8k": {"i2t_r1": 0.3, "t2i_r1": 0.2, "trivial": {"t2i_r10": "..."}, "t2i_r10": 1.0}},
                          {"tiny": "zeroshot", "f8k": "retrieval"}, model="m")
    assert math.isnan(rows[0]["acc5"]) and rows[0]["acc1"] == 0.5
    assert rows[1]["text_retrieval_recall@1"] == 0.3 and rows[1]["image_retrieval_recall@1"] == 0.2
    assert rows[1]["trivial"] == "image_retrieval_recall@10" and rows[1]["task"] == "zeroshot_retrieval"


def test_an_evaluation_named_twice_is_refused(tmp_path):
    folder = _folders(tmp_path / "flowers", ["daisy", "rose"])
    evals = {"a": {"kind": "zeroshot", "images": str(folder)},
             "b": {"kind": "zeroshot", "images": f"{tmp_path}/./flowers", "every": 10}}
    with pytest.raises(ConfigError, match="evals.b: runs the same evaluation as evals.a"):
        EvalSuite.from_evals(evals)
    evals["b"]["templates"] = "clip"  # another prompt set measures something else: allowed
    assert len(EvalSuite.from_evals(evals)) == 2
