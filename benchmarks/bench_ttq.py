"""Time to quality: training seconds until Flickr8k dev image->text R@1 reaches 0.30 and 0.344, per recipe.

    python benchmarks/bench_ttq.py [--recipes a,b] [--out DIR] [--threads N] [--skip-embed] [--variant NAME]

For each recipe (the demo's default: both towers locked with a bias-free MLP text head; the previous
default that tunes MiniLM's top layers live; a linear head; + latent mixup; + cached augmented
views; longer; a warm start that aligns heads on two caches and then tunes the top of MiniLM) it trains on Flickr8k train with dev retrieval every few steps, and reports: training
seconds (evaluation excluded) until dev i2t R@1 first reaches 0.30 and 0.344, the final dev and test
retrieval, and flowers/train zero-shot (the tuning split; flowers/test is for the demo to report).
A recipe of two phases (warm start) counts both phases' training seconds.

It also measures embedding throughput (decode + locked Lite0, images/s) for each engine against
the fp32 torch forward (today's path), and the cost of one training step on two caches at batch
1,024 against the bare matrix products of its heads and loss.

Writes OUT/ttq.md, OUT/ttq_dev_r1.png (dev R@1 against training seconds, one line per recipe) and
OUT/ttq.json; the last line printed is JSON with default_recipe, default_train_s_to_0344,
best_train_s_to_0344, embed_images_per_s, embed_fp32_images_per_s, ... Caches go to the default
cache root (embedded once, shared by the recipes). Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, flickr8k_slice, print_json, print_table  # noqa: E402

THRESHOLDS = (0.30, 0.344)
FLOWER_NAMES = "daisy,daisy\ndandelion,dandelion\nroses,rose\nsunflowers,sunflower\ntulips,tulip\n"

# Every recipe starts from the package defaults; what matters is spelled out, so the table stays
# comparable whatever the demo's config becomes. A recipe is a list of phases (steps, overrides).
BASE = ["model.image.name=efficientnet_lite0", "model.image.lock=L", "model.image.crop_pct=1.0",
        "model.text.name=minilm", "model.text.pooling=mean", "model.text.context_length=32",
        "model.init_temperature=30", "train.precision=auto", "optim.lr=0.001", "optim.weight_decay=0.0001"]
LL = ["model.text.lock=L", "train.batch_size=1024", "optim.warmup_steps=50"]
MLP = ["model.text.head=mlp", "model.text.head_bias=false"]
DEMO = "demo default: Lite0+Lite2, MPNet, LL + MLP head + mixup, sigmoid loss, class anchors"  # demo.yaml, spelled out
DEMO_TOWERS = ["model.image.concat=[{name: efficientnet_lite2}]", "model.image.cache_precision=auto",
               "model.text.name=mpnet", "model.text.cache_precision=auto"]
MINILM_DEMO = "former demo: Lite0, MiniLM, LL + MLP head + mixup"  # demo_minilm.yaml
RECIPES: dict[str, list[tuple[int, list[str]]]] = {
    DEMO: [(300, [*LL, *MLP, *DEMO_TOWERS, "train.mixup=1.0", "train.loss=sigmoid", "model.init_bias=-15.0",
                 "train.anchors.weight=1.0", "train.anchors.classes=128", "train.anchors.templates=single"])],
    MINILM_DEMO: [(300, [*LL, *MLP, "train.mixup=1.0"])],
    "previous default (MiniLM top 3 layers tuned)": [(500, [
        "model.text.lock=U", "model.text.locked_blocks=4", "model.text.lr_mult=0.3", "train.batch_size=256",
        "optim.warmup_steps=50"])],
    "LL + linear head": [(300, [*LL, "model.text.head_bias=false"])],
    "LL + MLP, no mixup": [(300, [*LL, *MLP, "train.mixup=0"])],
    "LL + MLP + 2 views": [(300, [*LL, *MLP, "train.mixup=1.0", "data.views=2"])],
    "LL + MLP + mixup, 600 steps": [(600, [*LL, *MLP, "train.mixup=1.0"])],
    "warm start: LL + MLP, then top layer of MiniLM": [
        (200, [*LL, *MLP]),
        (150, [*MLP, "model.text.lock=U", "model.text.locked_blocks=6", "model.text.lr_mult=0.5", "train.batch_size=256",
               "optim.warmup_steps=10", "optim.lr=0.0005"])],
}
EVAL_EVERY = {256: 50, 1024: 25}


def _overrides(phase: list[str]) -> dict[str, str]:
    return dict(o.split("=", 1) for o in phase)


def run_recipe(name: str, phases, work: Path, cache_root: str | None, eval_every: int | None) -> dict:
    from littune.train import Trainer, load_config

    f8k = SHARED / "flickr8k"
    curve, offset, prev, summary = [], 0.0, None, {}
    for i, (steps, overrides) in enumerate(phases):
        out = work / f"{re.sub(r'[^A-Za-z0-9]+', '_', name).strip('_')[:40]}-{i}"
        shutil.rmtree(out, ignore_errors=True)
        bs = int(_overrides(overrides).get("train.batch_size", 256))
        every = eval_every or EVAL_EVERY.get(bs, 50)
        extra = [f"train.init_from={prev}"] if prev else []
        cfg = load_config(None, [*BASE, *overrides, *extra, f"data.train=flickr8k:{f8k}:train",
                                 f"data.dev=flickr8k:{f8k}:dev", f"train.steps={steps}", f"train.eval_every={every}",
                                 f"train.out_dir={out}", "train.progress=false", "train.ckpt_every=0",
                                 "train.log_every=10"] + ([f"data.cache_root={cache_root}"] if cache_root else []))
        print(f"[ttq] {name}: phase {i + 1}/{len(phases)}, {steps} steps", file=sys.stderr, flush=True)
        summary = Trainer(cfg).fit()
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        curve += [(offset + r["train_s"], r["dev/i2t_r1"], r.get("dev/t2i_r1")) for r in rows if "dev/i2t_r1" in r]
        offset += summary["train_s"]
        prev = out
    reached = {t: next((s for s, r1, _ in curve if r1 >= t), None) for t in THRESHOLDS}
    return {"name": name, "run": str(prev), "curve": curve, "train_s": round(offset, 1), "reached": reached,
            "dev": summary.get("dev", {})}


def final_evals(result: dict, cache_root: str | None) -> None:
    from littune.evaluate.suite import EvalSuite
    from littune.runs import load_run

    model, _ = load_run(result["run"])
    with tempfile.TemporaryDirectory() as tmp:
        names = Path(tmp) / "flowers_classnames.csv"
        names.write_text(FLOWER_NAMES)
        suite = EvalSuite.from_evals({
            "test": {"kind": "retrieval", "data": f"flickr8k:{SHARED / 'flickr8k'}:test"},
            "zs": {"kind": "zeroshot", "images": str(SHARED / "flowers" / "train"), "classnames": str(names),
                   "templates": "flowers"}}, cache_root, progress=False)
        r = suite.run(model)
    result["test"] = {k: r["test"][k] for k in ("i2t_r1", "t2i_r1")}
    result["flowers_train_zeroshot"] = r["zs"]["top1"]


def embed_throughput(work: Path, n_images: int, engines: list[str]) -> dict[str, dict]:
    """Images/s of `littune embed` (decode + tower, 2 threads) per engine, and cosine to torch fp32."""
    import numpy as np

    from littune.cache import EmbedOptions, EmbeddingCache, embed
    from littune.towers import create_image_tower

    tower = create_image_tower("efficientnet_lite0")
    csv = flickr8k_slice(work, "train", n_images)
    out, feats = {}, {}
    for name in engines:
        folder = work / f"embed_{name}"
        shutil.rmtree(folder, ignore_errors=True)
        t0 = time.perf_counter()
        embed(str(csv), tower, folder, EmbedOptions(engine=name, progress=False, dtype="float32"))
        secs = time.perf_counter() - t0
        feats[name] = EmbeddingCache(folder).all().numpy()
        out[name] = {"images_per_s": round(n_images / secs, 1), "seconds": round(secs, 1)}
    ref = feats["torch"]
    for name, f in feats.items():
        cos = (f * ref).sum(1) / (np.linalg.norm(f, axis=1) * np.linalg.norm(ref, axis=1))
        out[name]["min_cosine_vs_torch"] = round(float(cos.min()), 6)
    return out


def step_cost(work: Path, cache_root: str | None, steps: int = 30) -> dict:
    """One training step on two caches (batch 1,024, LL + MLP head) vs the bare products of its heads
    and loss (forward + backward on tensors already in memory, no data loading, no optimiser)."""
    from littune.losses import create_loss
    from littune.train import Trainer, load_config

    f8k = SHARED / "flickr8k"
    cfg = load_config(None, [*BASE, *LL, *MLP, f"data.train=flickr8k:{f8k}:train", f"train.steps={steps + 5}",
                             f"train.out_dir={work / 'step_cost'}", "train.progress=false", "train.ckpt_every=0",
                             "train.log_every=1000"] + ([f"data.cache_root={cache_root}"] if cache_root else []))
    shutil.rmtree(work / "step_cost", ignore_errors=True)
    tr = Trainer(cfg)
    for s in range(5):
        tr.train_step(tr.batches(s))
    t0 = time.perf_counter()
    for s in range(5, 5 + steps):
        tr.train_step(tr.batches(s))
    full = (time.perf_counter() - t0) / steps
    b = tr.batches(0)
    x, y = b["image_features"], b["text_features"]
    m, loss_fn = tr.model, create_loss("softmax")
    t0 = time.perf_counter()
    for _ in range(steps):
        img, txt = m.encode_image_features(x), m.encode_text_features(y)
        loss_fn(img, txt, m.logit_scale.exp()).backward()
    bare = (time.perf_counter() - t0) / steps
    return {"step_s": round(full, 4), "bare_s": round(bare, 4), "ratio": round(full / bare, 2)}


def plot(results: list[dict], out: Path) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.4))
    ax = fig.subplots()
    for r in results:
        if r["curve"]:
            ax.plot([max(s, 0.5) for s, _, _ in r["curve"]], [v for _, v, _ in r["curve"]], marker=".", label=r["name"])
    for t in THRESHOLDS:
        ax.axhline(t, ls="--", lw=0.8, color="gray")
    ax.set_xscale("log")
    ax.set_xlabel("training seconds (evaluation excluded, log scale)")
    ax.set_ylabel("Flickr8k dev image→text R@1")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("time to quality")
    fig.tight_layout()
    fig.savefig(out, dpi=130)
    return out


def _s(v) -> str:
    return "not reached" if v is None else f"{v:.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipes", default=None, help="comma-separated recipe names or numbers (default: all)")
    ap.add_argument("--out", default="runs/bench_ttq")
    ap.add_argument("--cache", default=None, help="embedding cache root (default ~/.cache/littune)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    ap.add_argument("--eval-every", type=int, default=None)
    ap.add_argument("--embed-images", type=int, default=1000)
    ap.add_argument("--skip-embed", action="store_true", help="skip the engine throughput measurement")
    ap.add_argument("--variant", default="", help="results file docs/results/bench_ttq-VARIANT.json (e.g. for a "
                                                  "--recipes subset, so the full table's file stays)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    names = list(RECIPES)
    if a.recipes:
        names = [names[int(x)] if x.isdigit() else x for x in a.recipes.split(",")]
    results = []
    for name in names:
        r = run_recipe(name, RECIPES[name], out / "runs", a.cache, a.eval_every)
        final_evals(r, a.cache)
        results.append(r)
        (out / "ttq.json").write_text(json.dumps(results, indent=2))
    figures: dict = {}
    if not a.skip_embed:
        from littune.towers.engine import available

        engines = ["torch"] + [e for e in ("openvino", "onnx") if available(e)]
        figures["embed"] = embed_throughput(out, a.embed_images, engines)
    figures["step_on_two_caches"] = step_cost(out, a.cache)
    rows = [(r["name"], _s(r["reached"][0.30]), _s(r["reached"][0.344]),
             f"{r['dev'].get('i2t_r1', math.nan):.3f} / {r['dev'].get('t2i_r1', math.nan):.3f}",
             f"{r['test']['i2t_r1']:.3f} / {r['test']['t2i_r1']:.3f}", f"{r['flowers_train_zeroshot']:.3f}",
             f"{r['train_s']:.0f}") for r in results]
    head = ("| recipe | s to dev R@1 0.30 | s to 0.344 | final dev i2t / t2i R@1 | test i2t / t2i R@1 "
            "| flowers/train zero-shot | train s |")
    table = "\n".join([head, "|" + "---|" * 7] + ["| " + " | ".join(r) + " |" for r in rows])
    print("\n" + table)
    plot(results, out / "ttq_dev_r1.png")
    if "embed" in figures:
        print_table("embedding throughput (decode + EfficientNet-Lite0, 2 threads)",
                    [(e, f"{v['images_per_s']:.1f} img/s", f"min cosine vs torch {v['min_cosine_vs_torch']}")
                     for e, v in figures["embed"].items()])
    sc = figures["step_on_two_caches"]
    print_table("a step on two caches, batch 1,024 (LL + MLP head)",
                [("full training step", f"{sc['step_s'] * 1000:.1f} ms", "data, heads, loss, backward, clip, AdamW"),
                 ("bare heads + loss fwd/bwd", f"{sc['bare_s'] * 1000:.1f} ms", "tensors in memory"),
                 ("ratio", f"{sc['ratio']:.2f}", "goal <= 2")])
    (out / "ttq.md").write_text(table + "\n\n![dev R@1 against training seconds](ttq_dev_r1.png)\n")
    (out / "ttq.json").write_text(json.dumps({"recipes": results, **figures}, indent=2))
    default = results[0] if results else None
    reached = [r["reached"][0.344] for r in results if r["reached"][0.344] is not None]
    embed = figures.get("embed", {})
    best_engine = max(embed, key=lambda e: embed[e]["images_per_s"]) if embed else None
    print_json({
        "default_recipe": default["name"] if default else None,
        "default_train_s_to_0344": default["reached"][0.344] if default else None,
        "best_train_s_to_0344": min(reached) if reached else None,
        "best_recipe_to_0344": next((r["name"] for r in results if r["reached"][0.344] == min(reached)), None)
        if reached else None,
        "embed_engine": best_engine,
        "embed_images_per_s": embed[best_engine]["images_per_s"] if embed else None,
        "embed_fp32_images_per_s": embed["torch"]["images_per_s"] if embed else None,
        "step_vs_bare_ratio": sc["ratio"],
        # the table's rows and the engines, so the page's reading can quote the results file
        "recipes": [{"name": r["name"], "train_s": r["train_s"],
                     "s_to_dev_r1": {str(t): s for t, s in r["reached"].items()},
                     "dev": {k: r["dev"].get(k) for k in ("i2t_r1", "t2i_r1")}, "test": r["test"],
                     "flowers_train_zeroshot": round(r["flowers_train_zeroshot"], 4)} for r in results],
        "embed": {e: v["images_per_s"] for e, v in embed.items()},
        "step_on_two_caches_ms": {"step": round(sc["step_s"] * 1000, 1), "bare": round(sc["bare_s"] * 1000, 1)},
    }, variant=a.variant)


if __name__ == "__main__":
    main()
