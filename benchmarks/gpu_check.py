"""GPU readiness in one command: embed, train on the cache, train live, under torchrun too, and check
that the GPU computes what the CPU computes.

    python benchmarks/gpu_check.py                      # on a CUDA machine: every visible GPU
    python benchmarks/gpu_check.py --device cpu --images 32 --steps 4 --live-steps 2   # the same code on a CPU

1. embeds ``--images`` Flickr8k images with the locked EfficientNet-Lite0 on the device (images/s),
   and checks the first 64 against the CPU's features (cosine >= 0.999 per image);
2. trains ``--steps`` steps on that cache (MiniLM, the demo's model) with train.precision=auto (bf16 on
   GPUs): steps/s and peak GPU memory; and ``--live-steps`` steps that run the image tower every step;
3. repeats the first ``--compare`` steps in fp32 on the device and on the CPU: the losses must agree to
   ``--tolerance`` (relative; default 1e-3: fp32 on both, only summation order differs);
4. runs the cached training under ``torchrun --standalone --nproc_per_node N`` (N = visible GPUs, or
   ``--nproc``), with the same global batch: steps/s, and its first losses against one process;
5. measures what docs/scale_plan.md assumes (``benchmarks/scale_plan.py``): the bf16 matmul rate, ViT-B/16's
   forward and BERT-base's forward + backward at 16 tokens (``--plan-batch`` rows, random weights): their
   FLOP/s with FLOPs counted as the plan counts them, as a share of the stated peak (the plan's assumed
   utilisation), BERT-base's activation memory per example (the plan's gradient-cache rule) and the CPU's
   decode + resize time per image (re-derive the plan with ``scale_plan.py --from-json ... --decode-ms``).
Prints a table and, as its last line, JSON. Exit code 1 when a check fails.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, flickr8k_slice, print_json, print_table  # noqa: E402

MODEL = ["model.image.name=efficientnet_lite0", "model.image.lock=L", "model.text.name=minilm", "model.text.lock=U",
         "model.text.locked_blocks=4", "model.text.lr_mult=0.3", "model.init_temperature=30", "optim.warmup_steps=10"]

# The loss comparisons use a text tower without dropout: MiniLM drops 10% of its activations while
# training, and each process draws its own masks, so its losses differ with the number of processes
# (by ~4% here) for a reason that is not an error. A scratch transformer (dropout 0, seeded init)
# tests the same data path, global negatives and gradient averaging exactly.
COMPARE = ("model.text.name=scratch", "model.text.lock=u", "model.text.locked_blocks=0", "model.text.lr_mult=1.0",
           "model.text.tokenizer=minilm")


def _overrides(csv: Path, out: Path, cache: Path, steps: int, batch: int, device: str, precision: str,
               extra: tuple[str, ...] = ()) -> list[str]:
    return [*MODEL, f"data.train={csv}", f"data.cache_root={cache}", f"train.out_dir={out}", f"train.steps={steps}",
            f"train.batch_size={batch}", f"train.device={device}", f"train.precision={precision}",
            "train.progress=false", "train.ckpt_every=0", "train.log_every=1", "data.num_workers=2", *extra]


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()
            if '"loss"' in line]


def _train(overrides: list[str]) -> tuple[dict, float]:
    from littune.train import Trainer, load_config

    t0 = time.perf_counter()
    summary = Trainer(load_config(None, overrides)).fit()
    return summary, time.perf_counter() - t0


def embed_check(csv: Path, work: Path, device: str, n: int) -> dict:
    from littune.cache import EmbedOptions, EmbeddingCache, embed
    from littune.towers import create_image_tower

    tower = create_image_tower("efficientnet_lite0").to(device)
    out = work / "embed_device"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    embed(str(csv), tower, out, EmbedOptions(progress=False, dtype="float32", batch_size=128))
    secs = time.perf_counter() - t0
    cpu_csv = flickr8k_slice(work, "train", min(64, n)) if n > 64 else csv
    cpu_out = work / "embed_cpu"
    shutil.rmtree(cpu_out, ignore_errors=True)
    embed(str(cpu_csv), create_image_tower("efficientnet_lite0"), cpu_out,
          EmbedOptions(progress=False, dtype="float32", engine="torch"))
    a = EmbeddingCache(out).all().numpy()[: min(64, n)]
    b = EmbeddingCache(cpu_out).all().numpy()
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"images": n, "images_per_s": round(n / secs, 1), "min_cosine_vs_cpu": round(float(cos.min()), 6)}


def torchrun_steps(overrides: list[str], nproc: int) -> tuple[float, Path]:
    out = Path(next(o.split("=", 1)[1] for o in overrides if o.startswith("train.out_dir=")))
    shutil.rmtree(out, ignore_errors=True)
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", f"--nproc_per_node={nproc}", "-m", "littune", "train", *overrides]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0, out


def decode_ms(csv: Path, n: int = 32) -> float:
    """Decode + resize to 224 per image on one core of this machine (scale_plan.py's --decode-ms)."""
    from littune.cache import load_items
    from littune.data.images import load_image
    from littune.towers.preprocess import Preprocess

    paths = [it.image for it in load_items(str(csv))[0][:n]]
    pre = Preprocess(input_size=224, crop_pct=0.875).pil_transform()
    t0 = time.perf_counter()
    for p in paths:
        pre(load_image(p))
    return (time.perf_counter() - t0) / len(paths) * 1e3


def plan_check(device: str, batch: int, csv: Path | None = None) -> dict:
    """What the scale plan assumes, measured on ``device`` (docs/scale_plan.md, item 7 of issue 24)."""
    from bench_scale import matmul_gflops
    from scale_plan import GPU, RECIPE, act_bytes_per_example, count_towers, flops

    on_gpu = device.startswith("cuda")
    reps = 3 if on_gpu else 1  # the CPU run checks the code path; a GPU's figures are the ones to keep
    c = count_towers()
    f = flops(c)
    amp = torch.autocast("cuda" if on_gpu else "cpu", torch.bfloat16)
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)

    def best(fn) -> float:
        fn()
        sync()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        return min(times)

    vit, bert = c["vit"].to(device).eval(), c["bert"].to(device).train()
    x = torch.randn(batch, 3, 224, 224, device=device)
    with torch.inference_mode(), amp:
        vit_s = best(lambda: vit(x))
    ids = torch.randint(1000, 30000, (batch, RECIPE["text_tokens"]), device=device)

    def step():
        with amp:
            loss = bert(input_ids=ids).last_hidden_state[:, 0].float().pow(2).mean()
        loss.backward()
    if on_gpu:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    bert_s = best(step)
    act = (torch.cuda.max_memory_allocated() - base) / batch if on_gpu else None
    if on_gpu:
        a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
        mm_s = best(lambda: a @ a)
        matmul = 2 * 8192 ** 3 / mm_s / 1e9
    else:
        matmul = matmul_gflops("bfloat16")
    name = torch.cuda.get_device_name(0) if on_gpu else "cpu"
    peak = GPU["peak_bf16_tflops"] * 1e3 if "H100" in name else None  # GFLOP/s the plan states for its GPU
    vit_g, bert_g = batch * f["image_forward"] / vit_s / 1e9, batch * f["text_train"] / bert_s / 1e9
    return {"batch": batch, "matmul_bf16_gflops": round(matmul, 1), "stated_peak_bf16_gflops": peak,
            "decode_ms_per_image": round(decode_ms(csv), 2) if csv else None,
            "vit_b16_forward": {"images_per_s": round(batch / vit_s, 1), "gflops": round(vit_g, 1),
                                "of_matmul": round(vit_g / matmul, 3), "of_stated_peak": round(vit_g / peak, 3) if peak else None},
            "bert_base_train": {"examples_per_s": round(batch / bert_s, 1), "gflops": round(bert_g, 1),
                                "of_matmul": round(bert_g / matmul, 3), "of_stated_peak": round(bert_g / peak, 3) if peak else None,
                                "activation_mib_per_example": round(act / 2**20, 2) if act else None,
                                "plan_activation_mib_per_example": round(act_bytes_per_example() / 2**20, 2)}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (the same code, for tests)")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--live-steps", type=int, default=20)
    ap.add_argument("--compare", type=int, default=5, help="steps whose losses are compared with the CPU")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--nproc", type=int, default=0, help="torchrun processes (0: every visible GPU)")
    ap.add_argument("--tolerance", type=float, default=1e-3, help="relative loss difference allowed (fp32 vs fp32)")
    ap.add_argument("--out", default="runs/gpu_check")
    ap.add_argument("--plan-batch", type=int, default=0,
                    help="rows of the scale plan's ViT-B/16 and BERT-base measurements (0: 256 on a GPU, 2 on the CPU)")
    a = ap.parse_args()
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (use --device cpu to run the same code on the CPU)", file=sys.stderr)
        return 2
    work = Path(a.out)
    work.mkdir(parents=True, exist_ok=True)
    csv = flickr8k_slice(work, "train", a.images)
    cache = work / "cache"
    batch = min(a.batch, a.images)
    on_gpu = a.device.startswith("cuda")
    figures: dict = {"device": torch.cuda.get_device_name(0) if on_gpu else "cpu",
                     "embed": embed_check(csv, work, a.device, a.images)}

    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    summary, secs = _train(_overrides(csv, work / "cached", cache, a.steps, batch, a.device, "auto"))
    figures["cached"] = {"steps": a.steps, "steps_per_s": round(a.steps / summary["train_s"], 2),
                         "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if on_gpu else None}
    summary, _ = _train(_overrides(csv, work / "live", cache, a.live_steps, batch, a.device, "auto",
                                   ("data.use_cache=false",)))
    figures["live"] = {"steps": a.live_steps, "steps_per_s": round(a.live_steps / summary["train_s"], 2)}

    _train(_overrides(csv, work / "cmp_device", cache, a.compare, batch, a.device, "fp32", COMPARE))
    _train(_overrides(csv, work / "cmp_cpu", cache, a.compare, batch, "cpu", "fp32", COMPARE))
    dev, cpu = _losses(work / "cmp_device"), _losses(work / "cmp_cpu")
    rel = max(abs(x - y) / max(abs(y), 1e-12) for x, y in zip(dev, cpu))
    figures["losses_vs_cpu"] = {"device": dev, "cpu": cpu, "max_rel_diff": rel, "tolerance": a.tolerance,
                                "ok": rel <= a.tolerance}

    nproc = a.nproc or (torch.cuda.device_count() if on_gpu else 2)
    secs, run = torchrun_steps(_overrides(csv, work / "ddp", cache, a.compare, batch, a.device, "fp32", COMPARE), nproc)
    ddp = _losses(run)
    ddp_rel = max(abs(x - y) / max(abs(y), 1e-12) for x, y in zip(ddp, dev))
    figures["torchrun"] = {"nproc": nproc, "losses": ddp, "max_rel_diff_vs_one_process": ddp_rel,
                           "ok": ddp_rel <= a.tolerance, "wall_s": round(secs, 1)}
    figures["plan"] = plan_check(a.device, a.plan_batch or (256 if on_gpu else 2), csv)
    ok = figures["embed"]["min_cosine_vs_cpu"] >= 0.999 and figures["losses_vs_cpu"]["ok"] and figures["torchrun"]["ok"]
    figures["ok"] = ok
    print_table(f"GPU readiness on {figures['device']}", [
        ("embed images/s", f"{figures['embed']['images_per_s']}", f"min cosine vs CPU {figures['embed']['min_cosine_vs_cpu']}"),
        ("cached training steps/s", f"{figures['cached']['steps_per_s']}", f"peak GPU GiB {figures['cached']['peak_gpu_gib']}"),
        ("live training steps/s", f"{figures['live']['steps_per_s']}", "image tower every step"),
        ("first losses vs CPU (fp32)", f"{rel:.2e}", f"tolerance {a.tolerance}"),
        (f"torchrun x{nproc} losses vs 1 process", f"{ddp_rel:.2e}", f"tolerance {a.tolerance}"),
        ("plan: ViT-B/16 forward GFLOP/s (bf16)", f"{figures['plan']['vit_b16_forward']['gflops']}",
         f"share of stated peak {figures['plan']['vit_b16_forward']['of_stated_peak']} (plan assumes 0.50)"),
        ("plan: BERT-base train GFLOP/s (bf16, 16 tokens)", f"{figures['plan']['bert_base_train']['gflops']}",
         f"share of stated peak {figures['plan']['bert_base_train']['of_stated_peak']} (plan assumes 0.40); "
         f"activations {figures['plan']['bert_base_train']['activation_mib_per_example']} MiB/example "
         f"(plan {figures['plan']['bert_base_train']['plan_activation_mib_per_example']})"),
        ("plan: decode + resize ms per image per core", f"{figures['plan']['decode_ms_per_image']}",
         "scale_plan.py --decode-ms"),
    ])
    print_json(figures)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
