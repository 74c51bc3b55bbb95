"""The main job end to end: `littune demo --quick` on a small slice of ../shared/data."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from littune.cli import main


@pytest.mark.slow
@pytest.mark.xdist_group("demo")
def test_quick_demo_end_to_end(shared_data, tmp_path, capsys):
    out, cache = tmp_path / "runs", tmp_path / "cache"
    args = ["demo", "--quick", "--data", str(shared_data), "--out", str(out), "--cache", str(cache),
            "--json", "--no-progress"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("run_dir", "flickr8k_test", "flowers_zeroshot_top1", "flowers_probe_top1", "wall_s"):
        assert key in result
    f = result["flickr8k_test"]
    assert set(f) >= {"i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10"}
    assert all(0.0 <= v <= 1.0 for v in f.values())
    assert f["i2t_r1"] <= f["i2t_r5"] <= f["i2t_r10"] and f["t2i_r1"] <= f["t2i_r5"] <= f["t2i_r10"]
    # 200 test images / 1,000 captions: chance R@10 is 0.05 and 0.01; the slice learns far more.
    assert f["i2t_r10"] > 0.25 and f["t2i_r10"] > 0.15
    # The locked Lite0 features separate the five flowers almost perfectly with a linear probe.
    assert result["flowers_probe_top1"] > 0.7
    assert 0.0 <= result["flowers_zeroshot_top1"] <= 1.0
    run = result["run_dir"]
    assert (out / "latest").is_symlink() and (out / "latest").resolve() == Path(run).resolve()
    assert (json.loads((Path(run) / "demo.json").read_text())["run_dir"] == run)
    for name in ("report.md", "metrics.json", "training_curves.png", "flickr8k_test_retrieval_recall.png",
                 "flowers_zero_shot_confusion.png", "flowers_zero_shot_per_class.png"):
        assert (Path(run) / "report" / name).is_file(), name

    # The run directory is all other commands need; the second evaluation reuses the cache.
    images = tmp_path / "runs" / "quick_data" / "flowers" / "test"
    assert main(["eval", "zeroshot", "--model", run, "--images", str(images), "--cache", str(cache),
                 "--templates", "flowers", "--json", "--no-progress"]) == 0
    z = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert z["n"] == 100 and {"top1", "n"} <= set(z)
    # 5 classes: top-5 is 1.0 by construction, kept for parity with CLIP_benchmark and marked trivial
    assert z["top5"] == 1.0 and "every query is a hit" in z["trivial"]["top5"]


def test_latest_points_at_the_newest_run(tmp_path):
    from littune.demo import point_latest

    for name in ("lit-minilm-20260101-000000", "lit-minilm-20260102-000000"):
        (tmp_path / name).mkdir()
        link = point_latest(tmp_path, tmp_path / name)
        assert link == tmp_path / "latest" and link.is_symlink() and link.resolve() == (tmp_path / name).resolve()
    assert not (tmp_path / "latest").readlink().is_absolute()  # the runs folder can move


def test_the_table_names_runs_as_typed_from_the_working_folder(tmp_path, monkeypatch):
    from littune.demo import format_table

    f = {k: 0.5 for k in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")}
    result = {"flickr8k_test": f, "flowers_zeroshot_top1": 0.4, "flowers_probe_top1": 0.9, "temperature": 30.0,
              "wall_s": 60.0, "phases_s": {"install": None, "embed": 30.0},
              "run_dir": str(tmp_path / "runs" / "demo" / "lit-x"), "report": str(tmp_path / "runs" / "demo" / "lit-x" / "report" / "report.md")}
    monkeypatch.chdir(tmp_path)
    table = format_table(result)
    assert table.endswith("\n\nrun: runs/demo/lit-x\nreport: runs/demo/lit-x/report/report.md")
    assert "|   install" in table and "not measured (run through `make demo`)" in table and "| 0.5 min |" in table
    elsewhere = tmp_path.parent / "other"
    elsewhere.mkdir(exist_ok=True)
    monkeypatch.chdir(elsewhere)
    assert format_table(result).endswith(f"run: {tmp_path}/runs/demo/lit-x\nreport: {tmp_path}/runs/demo/lit-x/report/report.md")


def test_the_default_demo_is_minilms_recipe_with_mpnet_and_lite0_lite2(tmp_path):
    """`littune demo` (mpnet, demo.yaml) is the former default (`--text minilm`, demo_minilm.yaml) with
    the mpnet study's winning towers, the loss study's loss and the anchors studies' class anchors, and
    nothing else: MPNet and Lite0 + Lite2, cached in bf16 where native, the sigmoid loss from a logit bias
    of -15, and class anchors of weight 1 (128 classes a step, one template)."""
    import dataclasses

    from littune.demo import DemoOptions, demo_config

    assert DemoOptions().text == "mpnet"
    splits = {"train": "flickr8k:X:train", "dev": "flickr8k:X:dev"}
    base, mp = (demo_config(tmp_path, tmp_path / "run", text, False, None, None, splits) for text in ("minilm", "mpnet"))
    assert base.model.text.name == "minilm" and not base.model.image.concat
    assert (mp.model.text.name, mp.model.text.cache_precision, mp.model.image.cache_precision) == ("mpnet", "auto", "auto")
    assert [m.name for m in mp.model.image.concat] == ["efficientnet_lite2"] and mp.model.image.concat_normalize
    assert (base.train.loss, mp.train.loss, mp.model.init_bias) == ("softmax", "sigmoid", -15.0)
    assert (base.train.anchors.weight, mp.train.anchors.weight) == (0.0, 1.0)
    assert (mp.train.anchors.classes, mp.train.anchors.templates) == (128, "single")
    a, b = dataclasses.asdict(base), dataclasses.asdict(mp)
    for d in (a, b):
        d.pop("name"), d["model"]["text"].pop("name"), d["model"]["text"].pop("cache_precision")
        d["model"]["image"].pop("concat"), d["model"]["image"].pop("cache_precision")
        d["train"].pop("loss"), d["model"].pop("init_bias"), d["train"].pop("anchors")
    assert a == b
    with pytest.raises(ValueError, match="mpnet, minilm, scratch"):
        demo_config(tmp_path, tmp_path / "run", "bert", False, None, None, splits)


def test_dev_retrieval_during_training_is_opt_in(tmp_path):
    """The demo's default trains without a dev split (its first run is shorter); --dev adds it back."""
    from littune.cli import build_parser
    from littune.demo import demo_config

    splits = {"train": "flickr8k:X:train", "dev": "flickr8k:X:dev"}
    assert demo_config(tmp_path, tmp_path / "run", "mpnet", False, None, None, splits).data.dev is None
    with_dev = demo_config(tmp_path, tmp_path / "run", "mpnet", False, None, None, splits, dev=True)
    assert with_dev.data.dev == "flickr8k:X:dev"
    parser = build_parser()[0]
    assert parser.parse_args(["demo"]).dev is False and parser.parse_args(["demo", "--dev"]).dev
