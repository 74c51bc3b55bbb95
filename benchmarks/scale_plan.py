"""The plan for real scale, computed: embedding time, cache size and training time for CC12M and a
400M-pair set on 1, 8 and 64 GPUs, from FLOPs counted the way bench_scale.py counts them and this
machine's measured per-example costs. docs/scale_plan.md is this script's output.

    python benchmarks/scale_plan.py            # measures this machine (~2 min), prints the page's tables
    python benchmarks/scale_plan.py --gpu-mfu-train 0.35 --gpu-mfu-embed 0.45   # other efficiencies

Every number is derived in the open (the "how" column, and the JSON's ``inputs``):
- FLOPs: 2 x (linear-layer parameters) x tokens per forward, 6 x for forward + backward (the rule of
  bench_scale.py), plus attention's 4 x layers x tokens^2 x width per forward (small at 16 text
  tokens, 3% of a ViT-B/16 forward at 197 tokens); the parameters are counted on the real modules.
- GPU time = FLOPs / (peak bf16 FLOP/s x an assumed utilisation): --gpu-mfu-train / --gpu-mfu-embed.
  These two are the numbers a GPU run must check: ``benchmarks/gpu_check.py`` measures both (its ``plan``).
- The CPU side of embedding (decode + resize of every image) from this machine's measured time per
  image, spread over the GPU node's cores; embedding takes the longer of the GPU and CPU parts.
- Several GPUs: data parallel; per step the gradient all-reduce (ring: 2 (G-1)/G x bf16 gradients over
  the slowest link) and the features' all-gather are added, not assumed away.
- Memory: activations per example of a BERT-base layer per token ~ (34 h + 5 a s) bytes in bf16
  (Korthikanti et al. 2022, no recomputation); when a GPU's share of the batch does not fit, the
  gradient cache (train.grad_cache_chunk, as the recipe sets) runs the text tower forward twice:
  the text cost x 4/3.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, print_json  # noqa: E402

# ---- what is fixed: the recipe, the data, the GPU -------------------------------------------------------
RECIPE = {"steps": 60_000, "batches": (16_384, 32_768), "text_tokens": 16, "image_tokens": 197,
          "image_width": 768, "cache_dtype_bytes": 2}  # configs/paper/lit_b16_bert_base.yaml
DATASETS = {"CC12M": 12_423_374, "400M pairs (LAION-400M size)": 400_000_000}
GPU = {"name": "NVIDIA H100 SXM5 80GB", "peak_bf16_tflops": 989.0, "memory_gib": 80.0,  # dense, no sparsity
       "cpu_cores_per_gpu": 14,  # a DGX H100: 112 cores for 8 GPUs
       "nvlink_gbps": 450.0, "internode_gbps": 50.0}  # GB/s per GPU: NVLink 4 one way; 400 Gb/s InfiniBand
GPUS = (1, 8, 64)
HEADROOM_GIB = 12.0  # weights, AdamW states (16 bytes/param), the allocator's slack
GiB = 1024 ** 3


# ---- measured here ------------------------------------------------------------------------------------------
def count_towers() -> dict:
    """Linear parameters and layers of ViT-B/16 and BERT-base, counted on the modules (random init)."""
    import timm
    from transformers import BertConfig, BertModel

    from bench_scale import linear_params

    vit = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0)
    bert = BertModel(BertConfig(), add_pooling_layer=False)
    return {"vit": vit, "bert": bert, "vit_linear": linear_params(vit), "bert_linear": linear_params(bert),
            "vit_params": sum(p.numel() for p in vit.parameters()), "bert_params": sum(p.numel() for p in bert.parameters())}


def flops(c: dict) -> dict:
    """Per example: image forward, text forward + backward (the rule of bench_scale.py + attention)."""
    L, w = 12, 768
    img_fwd = 2 * c["vit_linear"] * RECIPE["image_tokens"] + 4 * L * RECIPE["image_tokens"] ** 2 * w
    txt_fwd = 2 * c["bert_linear"] * RECIPE["text_tokens"] + 4 * L * RECIPE["text_tokens"] ** 2 * w
    return {"image_forward": img_fwd, "text_train": 3 * txt_fwd, "text_forward": txt_fwd}


def measure(c: dict, f: dict, reps: int = 2) -> dict:
    """This machine: ViT-B/16 forward and BERT-base forward + backward per example, decode + resize per
    image, and the bf16 matmul throughput they are measured against (bench_scale.matmul_gflops)."""
    import torch

    from bench_scale import matmul_gflops

    def best(fn) -> float:
        fn()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    vit, bert = c["vit"].eval(), c["bert"].train()
    x = torch.randn(4, 3, 224, 224)
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
        vit_s = best(lambda: vit(x)) / 4
    ids = torch.randint(1000, 30000, (32, RECIPE["text_tokens"]))

    def step():
        with torch.autocast("cpu", torch.bfloat16):
            out = bert(input_ids=ids).last_hidden_state[:, 0].float().pow(2).mean()
        out.backward()
    bert_s = best(step) / 32
    decode_ms = None
    images = sorted((SHARED / "flickr8k" / "images").rglob("*.jpg"))[:24] if SHARED.is_dir() else []
    if images:
        from littune.data.images import load_image
        from littune.towers.preprocess import Preprocess

        pre = Preprocess(input_size=224, crop_pct=0.875).pil_transform()
        decode_ms = best(lambda: [pre(load_image(str(p))) for p in images]) / len(images) * 1e3
    matmul = matmul_gflops("bfloat16")
    return {"threads": torch.get_num_threads(), "vit_forward_s_per_image": vit_s, "bert_train_s_per_example": bert_s,
            "decode_resize_ms_per_image": decode_ms, "decode_images": len(images), "matmul_bf16_gflops": matmul,
            "vit_achieved_gflops": f["image_forward"] / vit_s / 1e9, "bert_achieved_gflops": f["text_train"] / bert_s / 1e9}


def metadata_bytes_per_row() -> float:
    """A 4,096-row metadata shard as embed writes it, with CC12M-like rows (a 110-character caption,
    key and path of a webdataset member, SHA-256 and size): its parquet bytes per row."""
    import tempfile

    import numpy as np

    from littune.cache.items import ImageItem
    from littune.cache.writer import _write_metadata

    rng = np.random.default_rng(0)
    words = ["a", "photo", "of", "the", "red", "house", "near", "beach", "with", "people", "walking", "dog",
             "sunset", "over", "mountains", "vintage", "poster", "design", "wedding", "dress", "kitchen"]
    items, digests = [], []
    for i in range(4096):
        cap = " ".join(rng.choice(words, 40))[:110]
        items.append(ImageItem(f"{i // 10000:05d}/{i:09d}", f"/data/cc12m/{i // 10000:05d}.tar", [cap]))
        digests.append((rng.bytes(32).hex(), int(rng.integers(20_000, 200_000))))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "metadata_0.parquet"
        _write_metadata(path, items, digests)
        return path.stat().st_size / 4096


# ---- derived --------------------------------------------------------------------------------------------
def act_bytes_per_example() -> float:
    h, a, s = 768, 12, RECIPE["text_tokens"]
    return (34 * h + 5 * a * s) * s * 12  # per layer per token, x tokens x 12 layers


def plan(c: dict, f: dict, m: dict, mfu_train: float, mfu_embed: float) -> dict:
    peak = GPU["peak_bf16_tflops"] * 1e12
    meta = m["metadata_bytes_per_row"]
    grad_bytes = 2 * c["bert_params"]  # bf16 gradients all-reduced each step
    out = {"embed": [], "train": []}
    for name, n in DATASETS.items():
        row_bytes = RECIPE["image_width"] * RECIPE["cache_dtype_bytes"] + meta
        for g in GPUS:
            gpu_s = n * f["image_forward"] / (g * peak * mfu_embed)
            cpu_s = n * (m["decode_resize_ms_per_image"] or 10.0) / 1e3 / (g * GPU["cpu_cores_per_gpu"])
            out["embed"].append({"data": name, "images": n, "gpus": g, "gpu_h": gpu_s / 3600, "cpu_h": cpu_s / 3600,
                                 "hours": max(gpu_s, cpu_s) / 3600, "bound": "GPU" if gpu_s >= cpu_s else "CPU decode",
                                 "cache_gb": n * row_bytes / 1e9, "row_bytes": row_bytes})
    for setup in ("LiT (littune: cached image features)", "open_clip --lock-image (image tower every step)"):
        live = setup.startswith("open_clip")
        for B in RECIPE["batches"]:
            for g in GPUS:
                local = B // g
                fits = local * act_bytes_per_example() <= (GPU["memory_gib"] - HEADROOM_GIB) * GiB
                text = f["text_train"] * (1 if fits else 4 / 3)
                loss = 6 * B * RECIPE["image_width"]  # per example: the B x B logits, forward and backward
                per_ex = text + loss + (f["image_forward"] if live else 0)
                compute_s = local * per_ex / (peak * mfu_train)
                link = GPU["nvlink_gbps"] if g <= 8 else GPU["internode_gbps"]
                comm_s = 0.0 if g == 1 else 2 * (g - 1) / g * grad_bytes / (link * 1e9) \
                    + B * RECIPE["image_width"] * 2 * 2 / (link * 1e9)  # + all-gather of both towers' features
                decode_s = (local * (m["decode_resize_ms_per_image"] or 10.0) / 1e3 / GPU["cpu_cores_per_gpu"]
                            if live else 0.0)
                step_s = max(compute_s + comm_s, decode_s)
                out["train"].append({"setup": setup, "batch": B, "gpus": g, "local_batch": local,
                                     "grad_cache": not fits, "gflop_per_example": per_ex / 1e9,
                                     "step_s": step_s, "compute_s": compute_s, "comm_s": comm_s, "decode_s": decode_s,
                                     "hours": RECIPE["steps"] * step_s / 3600,
                                     "examples_seen": RECIPE["steps"] * B,
                                     "bound": "CPU decode" if decode_s > compute_s + comm_s else "GPU"})
    return out


def render(c: dict, f: dict, m: dict, p: dict, a) -> str:
    lines = [f"Inputs (measured here; {m['threads']} thread(s), a shared 2-core machine, busy while measured):", "",
             f"- ViT-B/16: {c['vit_linear'] / 1e6:.1f}M linear parameters x {RECIPE['image_tokens']} tokens: "
             f"{f['image_forward'] / 1e9:.1f} GFLOP per image forward. This CPU: "
             f"{m['vit_forward_s_per_image'] * 1e3:.0f} ms per image (bf16), {m['vit_achieved_gflops']:.0f} GFLOP/s.",
             f"- BERT-base: {c['bert_linear'] / 1e6:.1f}M linear parameters x {RECIPE['text_tokens']} tokens: "
             f"{f['text_train'] / 1e9:.2f} GFLOP per example forward + backward. This CPU: "
             f"{m['bert_train_s_per_example'] * 1e3:.0f} ms per example (bf16), {m['bert_achieved_gflops']:.0f} GFLOP/s.",
             f"- This CPU's bf16 matmul (2048^2): {m['matmul_bf16_gflops']:.0f} GFLOP/s; so ViT forward ran at "
             f"{m['vit_achieved_gflops'] / m['matmul_bf16_gflops']:.0%} and BERT training at "
             f"{m['bert_achieved_gflops'] / m['matmul_bf16_gflops']:.0%} of it.",
             f"- Decode + resize to 224 (littune's load_image + uint8 transform), the shared Flickr8k JPEGs: "
             + (f"{m['decode_resize_ms_per_image']:.1f} ms per image per core ({m['decode_images']} images)."
                if m["decode_resize_ms_per_image"] else "not measured (no shared data): 10 ms assumed."),
             f"- Metadata per row as `littune embed` writes it (CC12M-like caption, key, path, SHA-256): "
             f"{m['metadata_bytes_per_row']:.0f} bytes of parquet.",
             f"- GPU: {GPU['name']}, {GPU['peak_bf16_tflops']:.0f} TFLOP/s peak dense bf16, {GPU['memory_gib']:.0f} GB; "
             f"{GPU['cpu_cores_per_gpu']} CPU cores per GPU; links {GPU['nvlink_gbps']:.0f} GB/s (NVLink, within 8) and "
             f"{GPU['internode_gbps']:.0f} GB/s (InfiniBand 400 Gb/s, 64 = 8 nodes).",
             f"- Assumed GPU utilisation (checked by `benchmarks/gpu_check.py`, its `plan` figures): training {a.gpu_mfu_train:.0%}, "
             f"embedding {a.gpu_mfu_embed:.0%} of peak.", "",
             "Embedding (once per data set) and the cache on disk:", "",
             "| data | GPUs | GPU part (h) | CPU decode (h) | embedding time (h) | bound by | cache (GB) |",
             "|---|---|---|---|---|---|---|"]
    for r in p["embed"]:
        lines.append(f"| {r['data']} | {r['gpus']} | {r['gpu_h']:.2f} | {r['cpu_h']:.2f} | **{r['hours']:.2f}** | "
                     f"{r['bound']} | {r['cache_gb']:.1f} |")
    lines += ["", f"How: GPU part = images x {f['image_forward'] / 1e9:.1f} GFLOP / (GPUs x {GPU['peak_bf16_tflops']:.0f} "
              f"TFLOP/s x {a.gpu_mfu_embed:.0%}); CPU part = images x decode time / (GPUs x {GPU['cpu_cores_per_gpu']} "
              f"cores); the two overlap (DataLoader workers), so the longer one is the time. Cache = images x "
              f"({RECIPE['image_width']} x 2 bytes fp16 + {m['metadata_bytes_per_row']:.0f} bytes metadata) = "
              f"{p['embed'][0]['row_bytes']:.0f} bytes per image.", "",
              f"Training, the recipe's {RECIPE['steps']:,} steps (`configs/paper/lit_b16_bert_base.yaml`; the same "
              "for either data set: time depends on examples seen, not on the set's size):", "",
              "| setup | batch | GPUs | local batch | grad cache | GFLOP/example | step (s) | of which comm (s) | "
              "training time (h) | bound by |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in p["train"]:
        lines.append(f"| {r['setup']} | {r['batch']:,} | {r['gpus']} | {r['local_batch']:,} | "
                     f"{'yes' if r['grad_cache'] else 'no'} | {r['gflop_per_example']:.2f} | {r['step_s']:.3f} | "
                     f"{r['comm_s']:.4f} | **{r['hours']:.1f}** | {r['bound']} |")
    lines += ["", f"How: per example, text {f['text_train'] / 1e9:.2f} GFLOP (x 4/3 with the gradient cache, needed when "
              f"local batch x {act_bytes_per_example() / 2**20:.1f} MiB of activations exceeds {GPU['memory_gib']:.0f} - "
              f"{HEADROOM_GIB:.0f} GiB) + the loss's 6 x batch x {RECIPE['image_width']} + (open_clip) the image "
              f"forward {f['image_forward'] / 1e9:.1f} GFLOP; step = local batch x that / ({GPU['peak_bf16_tflops']:.0f} "
              f"TFLOP/s x {a.gpu_mfu_train:.0%}) + ring all-reduce of {2 * c['bert_params'] / 1e6:.0f} MB of bf16 gradients "
              "+ all-gather of the features; open_clip also decodes every image every step on the node's CPU cores, "
              "and a step takes the longer of the two; time = steps x step."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu-mfu-train", type=float, default=0.40, help="assumed share of peak in training")
    ap.add_argument("--gpu-mfu-embed", type=float, default=0.50, help="assumed share of peak in embedding (inference)")
    ap.add_argument("--decode-ms", type=float, default=None,
                    help="decode + resize time per image per core (default: measured here; gpu_check.py measures "
                         "it on a GPU node)")
    ap.add_argument("--from-json", default=None,
                    help="re-derive the plan from a previous run's JSON line (its counts and measurements) "
                         "instead of measuring again")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the measurements (default 1: shared machine)")
    a = ap.parse_args()
    if a.from_json:
        line = [x for x in Path(a.from_json).read_text().splitlines() if x.startswith('{"inputs"')][-1]
        inputs = json.loads(line)["inputs"]
        c = {"vit_linear": inputs["linear_params"]["vit_b16"], "bert_linear": inputs["linear_params"]["bert_base"],
             "bert_params": inputs["params"]["bert_base"]}
        f, m = inputs["flops_per_example"], inputs["measured"]
    else:
        import torch

        torch.set_num_threads(a.threads)
        torch.manual_seed(0)
        c = count_towers()
        f = flops(c)
        m = measure(c, f)
        m["metadata_bytes_per_row"] = metadata_bytes_per_row()
    if a.decode_ms is not None:
        m = {**m, "decode_resize_ms_per_image": a.decode_ms, "decode_images": "given (--decode-ms)"}
    p = plan(c, f, m, a.gpu_mfu_train, a.gpu_mfu_embed)
    print(render(c, f, m, p, a))
    print_json({"inputs": {"recipe": {k: list(v) if isinstance(v, tuple) else v for k, v in RECIPE.items()},
                           "datasets": DATASETS, "gpu": GPU, "gpu_mfu_train": a.gpu_mfu_train,
                           "gpu_mfu_embed": a.gpu_mfu_embed, "flops_per_example": f,
                           "linear_params": {"vit_b16": c["vit_linear"], "bert_base": c["bert_linear"]},
                           "params": {"bert_base": c["bert_params"]},
                           "measured": m, "activation_bytes_per_example": act_bytes_per_example()},
                "plan": p})


if __name__ == "__main__":
    main()
