"""`littune study` end to end on tiny random-init towers and a slice of the real data."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import yaml

from littune.cli import main
from littune.study import collect_results, load_study_config, run_study
from littune.config import ConfigError

REPO = Path(__file__).resolve().parents[2]
SCRATCH = ["model.text.name=scratch", "model.text.lock=u", "model.text.tokenizer=minilm", "model.text.width=32",
           "model.text.depth=1", "model.text.heads=2", "model.text.context_length=16"]


@pytest.fixture(scope="module")
def study_data(shared_data, tmp_path_factory) -> dict:
    """16 Flickr8k images with their captions (CSV) and 4 flowers per class (symlinks)."""
    from littune.data.flickr8k import Flickr8k

    root = tmp_path_factory.mktemp("study_data")
    f8k = Flickr8k(shared_data / "flickr8k", "train")
    images, caps, c2i = f8k.images()[:16], f8k.captions(), f8k.caption_to_image()
    with (root / "pairs.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption"])
        w.writerows([images[i], c] for c, i in zip(caps, c2i) if i < 16)
    for cls in sorted(os.listdir(shared_data / "flowers" / "test")):
        (root / "flowers" / cls).mkdir(parents=True)
        for name in sorted(os.listdir(shared_data / "flowers" / "test" / cls))[:4]:
            (root / "flowers" / cls / name).symlink_to(shared_data / "flowers" / "test" / cls / name)
    return {"csv": str(root / "pairs.csv"), "flowers": str(root / "flowers")}


def _write_study(path: Path, data: dict, settings: dict, out: Path, steps: int = 3) -> Path:
    path.write_text(yaml.safe_dump({
        "name": "tiny", "out_dir": str(out), "cache_root": str(out.parent / "cache"),
        "common": [f"data.train={data['csv']}", f"train.steps={steps}", "train.batch_size=8", "train.log_every=1",
                   "train.ckpt_every=1", "train.progress=false", "optim.warmup_steps=1", "model.image.pretrained=false",
                   "data.num_workers=0", "train.threads=1"],
        "settings": settings,
        "evals": {"pairs": {"kind": "retrieval", "data": data["csv"]},
                  "flowers": {"kind": "zeroshot", "images": data["flowers"], "templates": "simple"}},
    }, sort_keys=False))
    return path


TWO = {"Lu": ["model.image.name=timm:test_efficientnet", "model.image.lock=L", *SCRATCH],
       "uu": ["model.image.name=timm:test_efficientnet", "model.image.lock=u", *SCRATCH]}


@pytest.mark.slow
@pytest.mark.xdist_group("study")
def test_two_setting_study_end_to_end_and_resume(study_data, tmp_path, capsys):
    out = tmp_path / "study"
    cfg_file = _write_study(tmp_path / "tiny.yaml", study_data, TWO, out)

    # One setting first (as one process of a split grid would): the report says what is missing.
    study = load_study_config(cfg_file)
    run_study(study, only=["Lu"], progress=False)
    assert set(collect_results(study)) == {"Lu"}
    assert "Not finished yet: uu" in (out / "study.md").read_text()
    lu_result = out / "Lu" / "result.json"
    stamp = lu_result.stat().st_mtime_ns

    # The whole grid from the CLI: Lu is kept as it is, uu is trained and evaluated.
    assert main(["study", "--config", str(cfg_file), "--json", "--no-progress"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert list(results) == ["Lu", "uu"] and lu_result.stat().st_mtime_ns == stamp
    for name, r in results.items():
        assert r["steps"] == 3 and r["batch_size"] == 8 and r["train_s"] > 0
        assert r["image_lock"] == name[0] and r["text_lock"] == name[1]
        for k in ("i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5", "zeroshot_top1"):
            assert 0.0 <= r[k] <= 1.0, (name, k)
        assert r["i2t_r1"] <= r["i2t_r5"] and r["t2i_r1"] <= r["t2i_r5"]
        assert set(r["zeroshot_per_class"]) == {"daisy", "dandelion", "roses", "sunflowers", "tulips"}
    assert results["Lu"]["cached"] is True and results["uu"]["cached"] is False
    # The locked tower's weights are proven unchanged; the random-init one trained.
    lu_summary = json.loads((out / "Lu" / "summary.json").read_text())
    info = json.loads((out / "Lu" / "model_info.json").read_text())
    assert lu_summary["fingerprints"]["image"] == info["fingerprints"]["image"]

    report = (out / "study.md").read_text()
    assert "| Lu | timm:test_efficientnet (L) | scratch (u) | 3 × 8 |" in report
    assert "| uu | timm:test_efficientnet (u) | scratch (u) | 3 × 8 |" in report
    assert "Not finished" not in report
    for png in ("study_metrics.png", "study_accuracy_time.png", "study_frontier.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "study.json").read_text()) == results


@pytest.mark.slow
@pytest.mark.xdist_group("study")
def test_half_trained_setting_resumes_from_its_checkpoint(study_data, tmp_path):
    import shutil

    out = tmp_path / "study"
    one = {"Lu": TWO["Lu"]}
    cfg_file = _write_study(tmp_path / "a.yaml", study_data, one, out, steps=4)
    first = run_study(load_study_config(cfg_file), progress=False)["Lu"]
    # Make it half-trained, as a kill after step 3 would leave it: no step-4 checkpoint, no result.
    for leftover in ("result.json", "summary.json"):
        (out / "Lu" / leftover).unlink()
    shutil.rmtree(out / "Lu" / "checkpoints" / "step_0000004")

    # The same setting with other overrides is refused, naming it: its half-run would mix configs.
    other = load_study_config(_write_study(tmp_path / "b.yaml", study_data, one, out, steps=6))
    with pytest.raises(ConfigError, match="setting 'Lu' was started with overrides"):
        run_study(other, progress=False)

    again = run_study(load_study_config(cfg_file), progress=False)["Lu"]
    rows = [json.loads(line) for line in (out / "Lu" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]  # step 4 retrained once, nothing twice
    # Training time adds up over the two attempts: step 1-3 from the checkpoint, step 4 again.
    assert again["train_s"] > 0 and again["steps"] == 4
    assert again["zeroshot_top1"] == pytest.approx(first["zeroshot_top1"])  # resumed exactly


@pytest.mark.slow
@pytest.mark.xdist_group("study")
def test_resnet_vit_and_mixer_towers_run_the_study_pipeline(study_data, tmp_path):
    """The architecture study's pipeline with small random-init timm ResNet, ViT and MLP-Mixer."""
    settings = {
        "resnet": ["model.image.name=timm:resnet10t", *SCRATCH],
        "vit": ["model.image.name=timm:test_vit", *SCRATCH],
        "mixer": ["model.image.name=timm:mixer_s32_224", "model.image.kwargs.img_size=64", *SCRATCH],
    }
    out = tmp_path / "arch"
    results = run_study(load_study_config(_write_study(tmp_path / "arch.yaml", study_data, settings, out, steps=2)),
                        progress=False)
    assert list(results) == ["resnet", "vit", "mixer"]
    for name, r in results.items():
        assert r["image_lock"] == "L" and r["cached"] and 0.0 <= r["zeroshot_top1"] <= 1.0, name
    # Each trained on its own tower's cached features: the cache manifests name the tower and its size.
    manifests = {n: json.loads((out / n / "cache_manifest.json").read_text()) for n in settings}
    assert {n: (m["tower"], m["embed_dim"]) for n, m in manifests.items()} == {
        "resnet": ("timm:resnet10t", 512), "vit": ("timm:test_vit", 64), "mixer": ("timm:mixer_s32_224", 512)}


def test_shipped_study_configs_parse_and_name_the_papers_settings():
    lock = load_study_config(REPO / "configs" / "study" / "flickr8k_lock.yaml")
    assert list(lock.settings) == ["Lu", "LU", "Uu", "UU", "uu"]
    for name in lock.settings:
        exp = lock.experiment(name)
        assert (exp.model.image.lock, exp.model.text.lock) == (name[0], name[1])
        assert exp.model.text.name == ("minilm" if name[1] == "U" else "scratch")
        assert exp.train.steps == lock.experiment("LU").train.steps  # equal compute in steps
        assert exp.train.batch_size == lock.experiment("LU").train.batch_size
    arch = load_study_config(REPO / "configs" / "study" / "architectures.yaml")
    names = " ".join(arch.experiment(n).model.image.name for n in arch.settings)
    for family in ("resnet", "vit", "mixer"):
        assert family in names


def test_bad_study_configs_name_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsettings: {A: [train.stepz=3]}\nevals: {zs: {kind: zeroshot, images: somewhere}}\n")
    with pytest.raises(ConfigError, match="study setting 'A'.*stepz"):
        load_study_config(bad)
    bad.write_text("name: x\nsettings: {}\nevals: {zs: {kind: zeroshot, images: somewhere}}\n")
    with pytest.raises(ConfigError, match="'settings' is empty"):
        load_study_config(bad)
    bad.write_text("name: x\nsetings: {A: []}\n")
    with pytest.raises(ConfigError, match="setings"):
        load_study_config(bad)
    bad.write_text(f"name: x\nout_dir: {tmp_path / 'out'}\nsettings: {{A: []}}\n"
                   "evals: {zs: {kind: zeroshot, images: somewhere}}\n")  # not the checkout's runs/study
    with pytest.raises(ConfigError, match="no setting 'B'"):
        run_study(load_study_config(bad), only=["B"], progress=False)


def test_report_with_nothing_finished_says_so_and_exits_2(tmp_path, capsys):
    out = tmp_path / "study"
    cfg = _write_study(tmp_path / "tiny.yaml", {"csv": "pairs.csv", "flowers": "flowers"}, TWO, out)
    assert main(["study", "--config", str(cfg), "--report"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("littune study: error: no setting of") and "nothing to report" in err
    assert not (out / "study.md").exists()


def test_frontier_joins_the_settings_no_other_beats_on_both(tmp_path):
    from littune.study import report

    drawn = {}
    real = report.Figure

    class Spy(real):
        def subplots(self, *a, **k):
            ax = super().subplots(*a, **k)
            plot = ax.plot

            def spy(x, y, *pa, **pk):
                drawn["frontier"] = list(zip(x, y))
                return plot(x, y, *pa, **pk)
            ax.plot = spy
            return ax

    results = {"a": {"i2t_r1": 0.30, "zeroshot_top1": 0.40}, "b": {"i2t_r1": 0.33, "zeroshot_top1": 0.30},
               "c": {"i2t_r1": 0.29, "zeroshot_top1": 0.35}, "d": {"i2t_r1": 0.34, "zeroshot_top1": 0.25}}
    report.Figure = Spy
    try:
        png = report.plot_frontier(results, tmp_path / "f.png")
    finally:
        report.Figure = real
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert drawn["frontier"] == [(0.30, 0.40), (0.33, 0.30), (0.34, 0.25)]  # c is beaten by a on both
