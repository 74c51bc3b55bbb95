"""Does caching a partly locked text tower's hidden states pay? MiniLM training steps, two ways.

    python benchmarks/bench_prefix_cache.py [--batch 256] [--steps 8] [--threads N]
    python benchmarks/bench_prefix_cache.py --train [--k 4] [--steps 20] [--batch 256] [--threads N]

``--train`` measures the built prefix cache (``littune/cache/prefix.py``) through ``littune train``'s
own code: the ``minilm_top3`` recipe (locked EfficientNet-Lite0 on its Flickr8k train cache, MiniLM
with ``locked_blocks=k``) with ``model.text.prefix_cache.k=k`` against the same config live, on
Flickr8k train only. It records the cache's disk size and build time (into a temporary folder, not
the image cache's), and steps/s of each run from its metrics log (runs alternate: live, prefix,
live, prefix). Its results file is ``bench_prefix_cache-train.json``.

Without ``--train`` (the measurement made before the cache was built):

With ``model.text.locked_blocks=N`` the lowest N layer groups of MiniLM (embeddings, then encoder
layers) never change, so their output for every caption could be computed once, like the image
cache, and a step would start from it. This measures what that would save, on real Flickr8k train
captions at the demo's context length (32):

    live      tokens -> every layer (the locked ones without gradients) -> pool -> loss, backward
    prefix    a batch of cached hidden states (fp16, gathered from a table the size of Flickr8k's
              30,000 captions, then cast) -> the unlocked layers -> pool -> loss, backward

Both run the same unlocked layers with the same attention mask (the mask MiniLM itself builds,
captured from a live forward), and the benchmark checks that they give the same features before
timing. The loss is InfoNCE against fixed random image features through a linear text head, so the
backward pass is a training step's. Issue 11 keeps the cache only if it is at least 1.3x faster per
step; the table gives the ratio per N and the storage it would take. Run it on an idle machine.
The last line printed is JSON.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, print_json, print_table, stage  # noqa: E402

KEEP_AT = 1.3  # the bar: keep the prefix cache only if a step is at least this much faster
FLICKR8K_TRAIN_CAPTIONS = 30_000


def captions(n: int) -> list[str]:
    from littune.data.flickr8k import Flickr8k

    caps = Flickr8k(SHARED / "flickr8k", "train").captions()
    return [caps[i % len(caps)] for i in range(n)]


def live_features_and_layer_input(tower, tokens: dict, layer: int) -> tuple[torch.Tensor, torch.Tensor, object]:
    """One live forward: the features, the hidden states entering encoder layer ``layer`` and the
    attention mask MiniLM passes to it."""
    seen: dict = {}

    def hook(_module, args, kwargs):
        seen["hidden"] = args[0].detach()
        seen["mask"] = args[1] if len(args) > 1 else kwargs.get("attention_mask")

    handle = tower.layer_groups()[1 + layer].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            features = tower.features(tokens["input_ids"], tokens["attention_mask"])
    finally:
        handle.remove()
    return features, seen["hidden"], seen["mask"]


def run_from(tower, first_layer: int, hidden: torch.Tensor, ext_mask, attention_mask: torch.Tensor) -> torch.Tensor:
    """The encoder from layer ``first_layer`` on, then the tower's pooling: (B, D) features."""
    from littune.towers.text import pool

    for layer in tower.layer_groups()[1 + first_layer:]:
        out = layer(hidden, ext_mask)
        hidden = out[0] if isinstance(out, tuple) else out
    return pool(hidden, attention_mask, tower.pooling)


def time_alternating(a, b, steps: int) -> tuple[float, float]:
    """Median seconds of ``a`` and of ``b``, run in turns (this machine's speed drifts by 20-30%
    over a minute: timing one block after the other would bias the ratio)."""
    a(), b()  # warm-up: allocator and kernels
    ta, tb = [], []
    for _ in range(steps):
        for fn, out in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def measure(locked_blocks: int, batch: int, steps: int, tokens: dict, images: torch.Tensor) -> dict:
    from littune.losses import create_loss
    from littune.towers.text import create_text_tower

    tower = create_text_tower("minilm", lock="U", locked_blocks=locked_blocks, context_length=32)
    head = torch.nn.Linear(tower.embed_dim, images.shape[1])
    params = [p for p in [*tower.parameters(), *head.parameters()] if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.0)  # the step's optimiser work, without changing the weights
    loss_fn, scale = create_loss("softmax"), torch.tensor(30.0)
    first = locked_blocks - 1  # groups: [embeddings, layer 0, ..., layer 5]; N locked -> layer N-1 trains first
    tower.eval()  # no dropout while checking: the same features both ways (fp16 storage rounds a little)
    live_f, hidden, ext_mask = live_features_and_layer_input(tower, tokens, first)
    T, D = hidden.shape[1:]
    table = torch.zeros(FLICKR8K_TRAIN_CAPTIONS, T, D, dtype=torch.float16)  # the cache, in memory
    table[:batch] = hidden.half()
    rows = torch.arange(batch)
    with torch.no_grad():
        prefix_f = run_from(tower, first, table[rows].float(), ext_mask, tokens["attention_mask"])
    max_diff = float((live_f - prefix_f).abs().max())
    cos = float(F.cosine_similarity(live_f, prefix_f).min())
    tower.train()

    def loss(features: torch.Tensor) -> torch.Tensor:  # InfoNCE through a linear text head, as in training
        return loss_fn(images, F.normalize(head(features), dim=-1), scale)

    def live_step():
        opt.zero_grad(set_to_none=True)
        loss(tower.features(tokens["input_ids"], tokens["attention_mask"])).backward()
        opt.step()

    def prefix_step():
        opt.zero_grad(set_to_none=True)
        cached = table[rows].float()  # gather the batch's rows and cast, as a cached step would
        loss(run_from(tower, first, cached, ext_mask, tokens["attention_mask"])).backward()
        opt.step()

    live_s, prefix_s = time_alternating(live_step, prefix_step, steps)
    return {"locked_blocks": locked_blocks, "trained_layers": len(tower.layer_groups()) - locked_blocks,
            "live_s": round(live_s, 4), "prefix_s": round(prefix_s, 4), "speedup": round(live_s / prefix_s, 3),
            "min_cosine": round(cos, 6), "max_abs_diff": max_diff,
            "cache_gb_flickr8k": round(FLICKR8K_TRAIN_CAPTIONS * T * D * 2 / 1e9, 2), "seq_len": T}


def _recipe(k: int, batch: int, steps: int, out: Path, prefix: Path | None, threads: int):
    """minilm_top3 with locked_blocks=k on Flickr8k train (the demo's image cache: crop 1.0), no evaluation."""
    from littune.config import load_config

    recipe = Path(__file__).resolve().parents[1] / "littune" / "resources" / "configs" / "minilm_top3.yaml"
    return load_config(recipe, [
        f"data.train=flickr8k:{SHARED / 'flickr8k'}:train", "model.image.crop_pct=1.0",
        f"model.text.locked_blocks={k}", f"train.steps={steps}", f"train.batch_size={batch}", "train.eval_every=0",
        "train.ckpt_every=0", "train.log_every=1", "train.progress=false", f"train.out_dir={out}",
        f"train.threads={threads}", "data.num_workers=0",
        *([f"model.text.prefix_cache.k={k}", f"model.text.prefix_cache.folder={prefix}"] if prefix else [])])


def _run(cfg) -> dict:
    """Train; steps/s from the metrics log (per-step wall time of the training loop, data included)."""
    import json

    from littune.train import Trainer

    trainer = Trainer(cfg)
    summary = trainer.fit()
    rows = [json.loads(line) for line in (Path(cfg.train.out_dir) / "metrics.jsonl").read_text().splitlines()]
    ends = [r["train_s"] for r in rows if "loss" in r]
    per_step = [b - a for a, b in zip([0.0, *ends[:-1]], ends)]
    later = per_step[1:]  # the first step warms the allocator and kernels
    return {"steps": len(per_step), "train_s": summary["train_s"], "setup_s": summary["setup_s"],
            "median_step_s": round(statistics.median(later), 4), "steps_per_s": round(len(later) / sum(later), 4),
            "first_loss": rows[0]["loss"], "last_loss": [r for r in rows if "loss" in r][-1]["loss"]}


def train_mode(a) -> None:
    import os
    import tempfile

    from littune.cache.prefix import PrefixOptions, build_prefix_cache
    from littune.train.data import open_cache

    load = os.getloadavg()
    threads = a.threads or torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="bench_prefix_") as tmp:
        tmp = Path(tmp)
        cfg = _recipe(a.k, a.batch, a.steps, tmp / "run", tmp / "prefix", threads)
        torch.set_num_threads(threads)
        stage(f"prefix cache: MiniLM k={a.k}, every Flickr8k train caption")
        tower = cfg.model.text.build()
        image_cache = open_cache(cfg.data, cfg.model.image.build(), "train", progress=False)
        texts = [c for caps in image_cache.captions for c in caps]
        t0 = time.perf_counter()
        cache = build_prefix_cache(texts, tower, tmp / "prefix", PrefixOptions(progress=True))
        build_s = time.perf_counter() - t0
        lengths = np.concatenate(cache._lengths)
        built = {"k": a.k, "texts": len(texts), "tokens": int(lengths.sum()), "mean_tokens": round(float(lengths.mean()), 2),
                 "dtype": cache.manifest.dtype, "disk_mb": round(cache.disk_bytes / 1e6, 1), "build_s": round(build_s, 1),
                 "build_texts_per_s": round(len(texts) / build_s, 1)}
        print(f"built in {build_s:.0f} s: {built['disk_mb']} MB", file=sys.stderr)
        runs: dict[str, list[dict]] = {"live": [], "prefix": []}
        for i in range(a.rounds):
            for name in ("live", "prefix"):
                stage(f"round {i + 1}: {a.steps} steps {name}, batch {a.batch}")
                runs[name].append(_run(_recipe(a.k, a.batch, a.steps, tmp / f"{name}{i}",
                                               tmp / "prefix" if name == "prefix" else None, threads)))
    best = {name: max(r["steps_per_s"] for r in rs) for name, rs in runs.items()}
    figures = {"cache": built, "batch": a.batch, "threads": threads, "precision": cfg.train.precision,
               "load_avg_at_start": [round(x, 2) for x in load],
               "live": runs["live"], "prefix": runs["prefix"],
               "speedup": round(best["prefix"] / best["live"], 3)}
    print_table(f"minilm_top3, locked_blocks={a.k}, batch {a.batch}, {threads} threads", [
        ("prefix cache", f"{built['disk_mb']} MB {built['dtype']}", f"built in {built['build_s']} s"),
        *[(name, f"{' / '.join(str(r['steps_per_s']) for r in rs)} steps/s", f"median step "
           f"{' / '.join(str(r['median_step_s']) for r in rs)} s") for name, rs in runs.items()],
        ("speed-up", f"{figures['speedup']}x", "best run of each")])
    print_json(figures, variant="train")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 8; --train: 20 per run)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--locked-blocks", default="2,4,6", help="comma-separated N of model.text.locked_blocks")
    ap.add_argument("--train", action="store_true", help="measure the built prefix cache through littune train")
    ap.add_argument("--k", type=int, default=4, help="--train: model.text.locked_blocks = prefix_cache.k")
    ap.add_argument("--rounds", type=int, default=2, help="--train: live and prefix runs, alternating")
    a = ap.parse_args()
    if a.train:
        a.steps = a.steps or 20
        return train_mode(a)
    a.steps = a.steps or 8
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    from littune.towers.text_hf import hf_tokenizer, minilm_path

    tokens = hf_tokenizer(str(minilm_path()), 32)(captions(a.batch))
    images = F.normalize(torch.randn(a.batch, 1280), dim=-1)
    rows = []
    for n in (int(x) for x in a.locked_blocks.split(",")):
        stage(f"locked_blocks={n}: live and prefix steps, batch {a.batch}")
        r = measure(n, a.batch, a.steps, tokens, images)
        if r["min_cosine"] < 0.999:
            raise SystemExit(f"locked_blocks={n}: the prefix path's features differ from the live ones "
                             f"(min cosine {r['min_cosine']}): the measurement would be of something else")
        rows.append(r)
    print_table(f"MiniLM step, batch {a.batch}, {torch.get_num_threads()} threads, padded length {rows[0]['seq_len']}", [
        (f"locked_blocks={r['locked_blocks']} ({r['trained_layers']} layers train)",
         f"{r['live_s'] * 1000:.0f} -> {r['prefix_s'] * 1000:.0f} ms",
         f"{r['speedup']:.2f}x; cache {r['cache_gb_flickr8k']} GB fp16; min cos {r['min_cosine']:.5f}") for r in rows])
    print_json({"batch": a.batch, "threads": torch.get_num_threads(), "keep_at": KEEP_AT,
                "rows": rows, "keep": {str(r["locked_blocks"]): r["speedup"] >= KEEP_AT for r in rows}})


if __name__ == "__main__":
    main()
