"""Training checked against a peer: open_clip's ``--lock-image`` path and littune's Lu path at equal steps.

    python benchmarks/bench_peer_openclip.py [--quick] [--images 1500] [--steps 100] [--batch 64] [--threads 2]

Both sides start from the SAME weights: littune builds its model (the packaged ``efficientnet_lite0``
locked, the packaged MiniLM text tower with a bias-free linear head, open_clip's shape), and that
initial model is exported to an open_clip folder (``littune export --format open_clip``'s code), which
open_clip's own ``create_model_and_transforms("local-dir:...")`` opens. Then, on the same Flickr8k train
pairs (littune's ``PairSchedule``: the same images and captions at every step), batch, steps, lr,
warmup + cosine, AdamW betas/eps/weight decay, gradient clip 1.0, fp32 and seed:

- open_clip: ``model.lock_image_tower(unlocked_groups=0, freeze_bn_stats=False)`` (what ``--lock-image``
  calls by default: frozen weights, BatchNorm still in training mode), AdamW with open_clip's main.py exclusions, ``cosine_lr``, ``create_loss`` and
  ``open_clip_train.train.train_one_epoch``: the locked tower runs on every image of every step, images
  decoded and transformed by open_clip's own (eval) transform in a DataLoader worker;
- littune: ``Trainer.fit`` on the embedding cache (the tower runs once per image, ``train_s`` excludes it;
  ``examples_per_s_with_embed`` counts the embedding too).

Neither side augments (LiT's locked cache has no augmentation; open_clip's train transform would add a
random resized crop). Both trained models are written as open_clip folders and scored by the same
evaluator (littune's ``retrieval`` on the first ``--dev-images`` Flickr8k dev images, all their captions)
through the same loader. Last line: one JSON object with each side's dev i2t/t2i R@1 and examples/s;
``goal_met`` is littune's R@1 >= open_clip's - 0.01 in both directions.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import flickr8k_slice, print_json, print_table, stage  # noqa: E402


def littune_config(work: Path, a: argparse.Namespace, train_csv: Path):
    from littune.config import load_config

    return load_config(None, [
        "model.image.name=efficientnet_lite0", "model.image.lock=L", "model.image.crop_pct=1.0",  # open_clip: no crop_pct
        "model.text.name=minilm", "model.text.lock=U", "model.text.head=linear", "model.text.head_bias=false",
        f"data.train={train_csv}", f"data.cache_root={work / 'cache'}", f"data.num_workers={a.workers}",
        f"train.out_dir={work / 'runs' / 'littune'}", f"train.steps={a.steps}", f"train.batch_size={a.batch}",
        f"train.seed={a.seed}", f"train.threads={a.threads}", "train.precision=fp32", "train.progress=false",
        "train.ckpt_every=0", f"train.log_every={a.log_every}", f"optim.lr={a.lr}", f"optim.warmup_steps={a.warmup}",
        f"optim.weight_decay={a.wd}", "optim.beta1=0.9", "optim.beta2=0.98", "optim.eps=1e-6", "optim.grad_clip=1.0"])


def write_open_clip_folder(model, cfg, folder: Path) -> Path:
    """littune's open_clip export of ``model`` (a LiTModel) into ``folder``."""
    from littune.infer.open_clip_export import plan_open_clip, write_open_clip

    lit = SimpleNamespace(model=model, cfg=cfg, source=None)
    plan = plan_open_clip(lit, folder)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    write_open_clip(lit, plan, folder, None)
    return folder


class _StepBatches(torch.utils.data.Dataset):
    """Item ``s`` = step ``s``'s batch: (images (B, 3, H, W) float, tokens (B, L)), littune's pairs."""

    def __init__(self, items, schedule, transform, tokenizer, steps: int):
        self.items, self.schedule, self.transform, self.tokenizer, self.steps = items, schedule, transform, tokenizer, steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int):
        from littune.data.images import load_image

        rows, caps, _ = self.schedule.batch(step)
        images = torch.stack([self.transform(load_image(self.items[r].image)) for r in rows])
        texts = [self.items[r].captions[c] for r, c in zip(rows, caps)]
        return images, self.tokenizer(texts)


def train_open_clip(folder: Path, items, schedule, a: argparse.Namespace) -> tuple[Path, float]:
    """open_clip's --lock-image training from ``folder``'s weights; returns (trained folder, examples/s)."""
    import open_clip
    from open_clip_train.scheduler import cosine_lr
    from open_clip_train.train import train_one_epoch
    from safetensors.torch import load_file, save_file

    torch.manual_seed(a.seed)
    clip, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}", output_dict=True)  # as main.py
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    # main.py's --lock-image with its defaults (--lock-image-unlocked-groups 0, no --lock-image-freeze-bn-stats):
    # the trunk's weights are frozen, its BatchNorms still run on batch statistics and update their running
    # ones. freeze_bn_stats=True is worse here: it swaps timm's BatchNormAct2d for torchvision's
    # FrozenBatchNorm2d, dropping the activation fused into it (Lite0's features become garbage).
    clip.lock_image_tower(unlocked_groups=0, freeze_bn_stats=False)
    # main.py's AdamW: no decay on gains, biases and the scale
    exclude = [p for n, p in clip.named_parameters() if p.requires_grad and (
        p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n)]
    rest = [p for n, p in clip.named_parameters() if p.requires_grad and not any(p is q for q in exclude)]
    opt = torch.optim.AdamW([{"params": exclude, "weight_decay": 0.0}, {"params": rest, "weight_decay": a.wd}],
                            lr=a.lr, betas=(0.9, 0.98), eps=1e-6)
    args = SimpleNamespace(
        device="cpu", precision="fp32", distill=False, accum_freq=1, skip_scheduler=False, grad_clip_norm=1.0,
        horovod=False, log_every_n_steps=a.log_every, batch_size=a.batch, world_size=1, rank=0, local_rank=0,
        wandb=False, model="littune-export", local_loss=False, gather_with_grad=False, siglip=False,
        loss_dist_impl=None, coca_caption_loss_weight=0.0, coca_contrastive_loss_weight=1.0)
    loss = open_clip.create_loss(args)
    batches = _StepBatches(items, schedule, preprocess, tokenizer, a.steps)
    loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False, num_workers=a.workers,
                                         persistent_workers=False)
    loader.num_batches, loader.num_samples = a.steps, a.steps * a.batch
    sched = cosine_lr(opt, a.lr, a.warmup, a.steps)
    t0 = time.perf_counter()
    # open_clip_train.data.DataInfo's interface (that module imports pandas, which littune does not need)
    data = {"train": SimpleNamespace(dataloader=loader, set_epoch=lambda epoch: None)}
    train_one_epoch(clip, data, loss, 0, opt, None, sched, None, args)
    rate = a.steps * a.batch / (time.perf_counter() - t0)
    # The trained weights in a copy of the folder, without littune's record (its fingerprints are the start's).
    out = folder.with_name(folder.name + "_trained")
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(folder, out)
    state = load_file(str(folder / "open_clip_model.safetensors"))
    trained = clip.state_dict()  # with the BatchNorm running statistics open_clip's training moved
    lacking = sorted(set(state) - set(trained))
    assert not lacking, f"open_clip's state lacks {lacking[:4]}"
    state = {k: trained[k].detach().contiguous() for k in state}
    save_file(state, str(out / "open_clip_model.safetensors"))
    config = json.loads((out / "open_clip_config.json").read_text())
    config.pop("littune")
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    return out, rate


def dev_recall(folder: Path, dev_csv: Path, work: Path) -> dict[str, float]:
    """The one evaluator both sides get: littune's retrieval on the dev slice, the model read as open_clip."""
    from littune.evaluate.evaluators import create_evaluator
    from littune.infer.open_clip_model import load_open_clip

    ev = create_evaluator("retrieval", {"data": str(dev_csv)}, cache_root=work / "eval_cache", progress=False)
    model = load_open_clip(folder)
    # An open_clip tokenizer has no definition to fingerprint, so the evaluator cannot cache a locked text
    # tower's features under it: mark the tower unlocked, and it encodes the captions afresh (same numbers).
    model.text.set_lock("U")
    with torch.no_grad():
        m = ev.run(model.eval())
    return {"i2t_r1": round(float(m["i2t_r1"]), 4), "t2i_r1": round(float(m["t2i_r1"]), 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run: 96 images, 6 steps of 16, 48 dev images")
    p.add_argument("--images", type=int, default=1500, help="Flickr8k train images (all their captions)")
    p.add_argument("--dev-images", type=int, default=500)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--wd", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=1, help="image decoding workers, both sides")
    p.add_argument("--log-every", type=int, default=25, help="both sides log their loss this often (stderr)")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    a = p.parse_args()
    if a.quick:
        a.images, a.dev_images, a.steps, a.batch, a.warmup = 96, 48, 6, 16, 2
    torch.set_num_threads(a.threads)
    logging.basicConfig(level=logging.INFO, format="open_clip: %(message)s")  # train_one_epoch's loss lines
    work = a.work or Path(tempfile.mkdtemp(prefix="bench_peer_"))
    try:
        run(work, a)
    finally:
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)


def run(work: Path, a: argparse.Namespace) -> None:
    from littune.train import Trainer
    from littune.train.data import live_items

    train_csv = flickr8k_slice(work, "train", a.images)
    dev_csv = flickr8k_slice(work, "dev", a.dev_images)
    cfg = littune_config(work, a, train_csv)
    shutil.rmtree(cfg.train.out_dir, ignore_errors=True)  # a fresh run each time (the caches are kept)
    stage("littune: building the model and embedding the train images (the cache)")
    t0 = time.perf_counter()
    trainer = Trainer(cfg)
    embed_s = time.perf_counter() - t0
    start = write_open_clip_folder(trainer.model, cfg, work / "start")  # open_clip starts from these weights
    items = live_items(cfg.data)
    assert [len(it.captions) for it in items] == trainer.schedule.n_captions.tolist(), "pairs differ"
    stage(f"open_clip --lock-image: {a.steps} steps of {a.batch}")
    oc_folder, oc_rate = train_open_clip(start, items, trainer.schedule, a)
    stage(f"littune Lu on the cache: {a.steps} steps of {a.batch}")
    summary = trainer.fit()
    lt_rate = a.steps * a.batch / summary["train_s"]
    lt_rate_embed = a.steps * a.batch / (summary["train_s"] + embed_s)
    lt_folder = write_open_clip_folder(trainer.model, cfg, work / "littune_trained")
    stage(f"dev retrieval ({a.dev_images} images), the same evaluator for both")
    oc, lt = dev_recall(oc_folder, dev_csv, work), dev_recall(lt_folder, dev_csv, work)
    goal = all(lt[k] >= oc[k] - 0.01 for k in ("i2t_r1", "t2i_r1"))
    print_table(f"littune vs open_clip --lock-image at equal steps ({a.steps} x {a.batch}, {a.images} train "
                f"images, {a.threads} threads)", [
        ("open_clip dev i2t / t2i R@1", f"{oc['i2t_r1']:.4f} / {oc['t2i_r1']:.4f}", "the peer"),
        ("littune dev i2t / t2i R@1", f"{lt['i2t_r1']:.4f} / {lt['t2i_r1']:.4f}", ">= open_clip - 0.01"),
        ("open_clip examples/s", f"{oc_rate:.1f}", "locked tower on every image, every step"),
        ("littune examples/s", f"{lt_rate:.1f}", f"{lt_rate_embed:.1f} counting the cache's embedding"),
    ])
    print_json({"bench": "peer_openclip", "steps": a.steps, "batch": a.batch, "lr": a.lr, "warmup": a.warmup,
                "wd": a.wd, "seed": a.seed, "train_images": a.images, "dev_images": a.dev_images,
                "threads": a.threads, "open_clip": {"dev_i2t_r1": oc["i2t_r1"], "dev_t2i_r1": oc["t2i_r1"],
                                                    "examples_per_s": round(oc_rate, 1)},
                "littune": {"dev_i2t_r1": lt["i2t_r1"], "dev_t2i_r1": lt["t2i_r1"],
                            "examples_per_s": round(lt_rate, 1),
                            "examples_per_s_with_embed": round(lt_rate_embed, 1)},
                "goal_met": goal})


if __name__ == "__main__":
    main()
