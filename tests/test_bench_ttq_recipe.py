"""bench_ttq's "demo default" recipe is the demo's config, spelled out: if the demo's recipe changes
and the benchmark's does not, the time-to-quality figures would describe another model."""
from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

from littune.train import load_config

REPO = Path(__file__).resolve().parents[1]


def test_demo_recipe_in_bench_ttq_is_the_demo_config():
    spec = importlib.util.spec_from_file_location("bench_ttq", REPO / "benchmarks" / "bench_ttq.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    [(steps, overrides)] = bench.RECIPES[bench.DEMO]
    ours = load_config(None, [*bench.BASE, *overrides, f"train.steps={steps}"])
    demo = load_config(str(REPO / "littune" / "resources" / "configs" / "demo.yaml"), [])
    assert demo.model.text.name == "mpnet" and demo.model.image.concat  # the default, not demo_minilm.yaml
    assert dataclasses.asdict(ours.model) == dataclasses.asdict(demo.model)
    assert dataclasses.asdict(ours.optim) == dataclasses.asdict(demo.optim)
    assert dataclasses.asdict(ours.train.anchors) == dataclasses.asdict(demo.train.anchors)
    for key in ("steps", "batch_size", "mixup", "loss", "precision"):
        assert getattr(ours.train, key) == getattr(demo.train, key), key
