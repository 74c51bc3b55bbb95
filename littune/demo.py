"""The main job: train LiT on Flickr8k with the offline default towers and prove zero-shot transfer.

    embed   Flickr8k train/test (and dev with --dev) and TF-flowers with the locked Lite0 + Lite2 (cached),
            and their captions with the locked MPNet (or MiniLM)
    train   the text head (or, with --text scratch, a transformer from scratch) on Flickr8k train
    eval    Flickr8k test retrieval, flowers zero-shot (never trained on flowers), flowers probe
    report  a results table, report.md with plots, and a run directory every command can load
"""
from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from .config import ExperimentConfig, load_config
from .evaluate.retrieval import RECALL_KEYS
from .evaluate.summary import build_report

if TYPE_CHECKING:  # the tower's code (torch) is imported only when the demo runs
    from .towers import ImageTower

FLOWER_NAMES = {"daisy": "daisy", "dandelion": "dandelion", "roses": "rose", "sunflowers": "sunflower",
                "tulips": "tulip"}


# --text: the demo's recipe with each text tower (resources/configs/); mpnet is the default demo.yaml,
# minilm the former default (Lite0 + MiniLM, the model that exports to open_clip)
DEMO_CONFIGS = {"mpnet": "demo.yaml", "minilm": "demo_minilm.yaml", "scratch": "demo_scratch.yaml"}


@dataclass
class DemoOptions:
    data: Optional[str] = None  # folder with flickr8k/ and flowers/ (default ../shared/data, else download)
    out: str = "runs/demo"
    text: str = "mpnet"  # mpnet | minilm | scratch
    quick: bool = False
    steps: Optional[int] = None
    cache: Optional[str] = None  # embedding cache root
    progress: bool = True
    dev: bool = False  # also Flickr8k dev retrieval while training (the report's R@1 curve; ~1.5 min on a first run)


def find_data(data: str | None) -> Path:
    """--data, else ../shared/data beside the project (or the working folder), else download."""
    if data:
        p = Path(data)
        if not (p / "flickr8k").is_dir() or not (p / "flowers").is_dir():
            raise FileNotFoundError(f"{p} needs flickr8k/ and flowers/ (see ../shared/data/README.md layout)")
        return p.resolve()
    for base in (Path(__file__).resolve().parents[1], Path.cwd()):
        p = base.parent / "shared" / "data"
        if (p / "flickr8k").is_dir() and (p / "flowers").is_dir():
            return p.resolve()
    from .data.download import ensure_data

    return Path(ensure_data(Path.home() / ".cache" / "littune" / "data")).resolve()


def demo_config(data: Path, run_dir: Path, text: str, quick: bool, steps: int | None,
                cache: str | None, splits: dict[str, str], dev: bool = False) -> ExperimentConfig:
    name = DEMO_CONFIGS.get(text)
    if name is None:
        raise ValueError(f"--text must be one of {', '.join(DEMO_CONFIGS)}, got {text!r}")
    overrides = [f"data.train={splits['train']}", f"data.dev={splits['dev'] if dev else 'null'}",
                 f"train.out_dir={run_dir}"]
    if cache:
        overrides.append(f"data.cache_root={cache}")
    if quick:
        overrides += ["train.steps=40", "train.batch_size=64", "optim.warmup_steps=5", "train.ckpt_every=20"]
    if steps:
        overrides.append(f"train.steps={steps}")
    return load_config(Path(__file__).parent / "resources" / "configs" / name, overrides)


def _quick_slice(data: Path, out: Path) -> tuple[dict[str, str], Path]:
    """A small, fixed slice of the real data for --quick: CSVs for Flickr8k, symlinked flowers."""
    from .data.flickr8k import Flickr8k

    out.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, n in (("train", 600), ("dev", 100), ("test", 200)):
        path = out / f"flickr8k_{split}.csv"
        if not path.is_file():
            f8k = Flickr8k(data / "flickr8k", split)
            images, caps, c2i = f8k.images()[:n], f8k.captions(), f8k.caption_to_image()
            with path.open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["image", "caption"])
                w.writerows([images[i], c] for c, i in zip(caps, c2i) if i < n)
        splits[split] = str(path)
    flowers = out / "flowers"
    for part, n in (("train", 30), ("test", 20)):
        for cls in sorted(os.listdir(data / "flowers" / part)):
            dst = flowers / part / cls
            if dst.is_dir():
                continue
            dst.mkdir(parents=True)
            for name in sorted(os.listdir(data / "flowers" / part / cls))[:n]:
                (dst / name).symlink_to(data / "flowers" / part / cls / name)
    return splits, flowers


def point_latest(out: Path, run_dir: Path) -> Path:
    """``OUT/latest`` -> the newest trained run (relative, replaced atomically): ``--model runs/demo/latest``."""
    link, tmp = out / "latest", out / ".latest.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(run_dir.name, target_is_directory=True)
    os.replace(tmp, link)
    return link


def demo_evals(test_spec: str, flowers: Path, classnames: Path) -> dict[str, dict]:
    """What the demo reports: test retrieval, zero-shot on flowers it never trained on, the probe."""
    return {
        "flickr8k test retrieval": {"kind": "retrieval", "data": test_spec},
        "flowers zero-shot": {"kind": "zeroshot", "images": str(flowers / "test"), "classnames": str(classnames),
                              "templates": "flowers"},
        "flowers linear probe": {"kind": "probe", "train": str(flowers / "train"), "test": str(flowers / "test")},
    }


def _install_seconds() -> float | None:
    """What `make demo` measured for installing (it sets LITTUNE_INSTALL_S); None when run otherwise."""
    v = os.environ.get("LITTUNE_INSTALL_S")
    return float(v) if v else None


def embed_images(cfg: ExperimentConfig, specs: list[str], tower: ImageTower) -> None:
    """Every image the demo will read, through the locked image tower once (cached; training and
    evaluation then find the caches), so the demo can say how long embedding took."""
    from .evaluate.features import image_features

    for spec in specs:
        image_features(tower, spec, cfg.data.cache_root, cfg.train.progress)


def run_demo(opts: DemoOptions) -> dict:
    from .evaluate.suite import EvalSuite
    from .runs import load_run
    from .train import Trainer

    t0 = time.time()
    data = find_data(opts.data)
    out = Path(opts.out).resolve()
    run_dir = out / f"lit-{opts.text}{'-quick' if opts.quick else ''}-{time.strftime('%Y%m%d-%H%M%S')}"
    if opts.quick:
        splits, flowers = _quick_slice(data, out / "quick_data")
    else:
        splits = {s: f"flickr8k:{data / 'flickr8k'}:{s}" for s in ("train", "dev", "test")}
        flowers = data / "flowers"
    cfg = demo_config(data, run_dir, opts.text, opts.quick, opts.steps, opts.cache, splits, opts.dev)
    cfg.train.progress = opts.progress
    phases = {"install": _install_seconds()}
    t = time.time()
    tower = cfg.model.image.build()  # once: embedding, training and the final evaluation share it
    embed_images(cfg, [splits[s] for s in (("train", "dev", "test") if opts.dev else ("train", "test"))]
                 + [f"folder:{flowers / part}" for part in ("train", "test")], tower)
    phases["embed"] = time.time() - t
    t = time.time()
    trainer = Trainer(cfg, image_tower=tower)  # embeds the captions first when the text tower is locked (a text cache)
    summary = trainer.fit()
    phases["embed"] += summary["setup_s"]
    phases["train"] = summary["train_s"]
    phases["evaluate"] = time.time() - t - summary["setup_s"] - summary["train_s"]  # dev evaluations, checkpoints
    point_latest(out, run_dir)
    t = time.time()
    model, _ = load_run(run_dir, image_tower=tower, text_tower=trainer.model.text)  # both towers built once
    names = run_dir / "flowers_classnames.csv"
    names.write_text("".join(f"{k},{v}\n" for k, v in FLOWER_NAMES.items()))
    suite = EvalSuite.from_evals(demo_evals(splits["test"], flowers, names), cfg.data.cache_root, opts.progress)
    results = suite.run(model)
    phases["evaluate"] += time.time() - t
    retrieval, zeroshot, probe = results.values()
    report = build_report(run_dir / "report", "littune demo: LiT on Flickr8k, zero-shot on flowers", results,
                          run_dir=run_dir)
    result = {
        "run_dir": str(run_dir),
        "flickr8k_test": {k: round(retrieval[k], 4) for k in RECALL_KEYS},
        "flowers_zeroshot_top1": round(zeroshot["top1"], 4),
        "flowers_zeroshot_per_class": {k: round(v, 4) for k, v in zeroshot["per_class"].items()},
        "flowers_probe_top1": round(probe["top1"], 4),
        "temperature": round(model.temperature, 2),
        "steps": cfg.train.steps,
        "batch_size": cfg.train.batch_size,
        "text_tower": cfg.model.text.name,
        "report": str(report),
        "quick": opts.quick,
        "wall_s": round(time.time() - t0, 1),
        "phases_s": {k: (round(v, 1) if v is not None else None) for k, v in phases.items()},
    }
    (run_dir / "demo.json").write_text(json.dumps(result, indent=2))
    return result


def format_table(r: dict) -> str:
    f = r["flickr8k_test"]
    rows = [
        ("Flickr8k test image->text R@1 / R@5 / R@10", f"{f['i2t_r1']:.3f} / {f['i2t_r5']:.3f} / {f['i2t_r10']:.3f}"),
        ("Flickr8k test text->image R@1 / R@5 / R@10", f"{f['t2i_r1']:.3f} / {f['t2i_r5']:.3f} / {f['t2i_r10']:.3f}"),
        ("flowers zero-shot top-1 (5 classes, chance 0.200)", f"{r['flowers_zeroshot_top1']:.3f}"),
        ("flowers linear probe top-1 (locked features)", f"{r['flowers_probe_top1']:.3f}"),
        ("final temperature", f"{r['temperature']:.1f}"),
        ("wall time of `littune demo` (install not included)", f"{r['wall_s'] / 60:.1f} min"),
    ]
    rows += [(f"  {k}", "not measured (run through `make demo`)" if v is None else f"{v / 60:.1f} min")
             for k, v in r.get("phases_s", {}).items()]
    w = max(len(a) for a, _ in rows)
    lines = [f"| {'metric':<{w}} | value |", f"|{'-' * (w + 2)}|-------|"]
    lines += [f"| {a:<{w}} | {b} |" for a, b in rows]
    return "\n".join(lines) + f"\n\nrun: {_shown(r['run_dir'])}\nreport: {_shown(r['report'])}"


def _shown(path: str) -> str:
    """A path under the working folder as typed from it (``runs/demo/...``), any other in full."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel
