"""Run under torchrun (or as one process): one training step's loss and gradients, saved to a file.

The same seeded tiny model and the same global batch in every process; each process takes its
slice of the batch, exactly as the trainer does. One launch runs every case named on the command
line (LOSS:LOCAL_LOSS:GRAD_CACHE_CHUNK[:DROP], e.g. softmax:1:0); rank 0 saves
{case: {"loss", "grads"}} with torch.save. DROP: the index of a global row that is left out (as a
live image that fails to decode is): its process then holds one pair fewer than the others.
LOSS "ring" is the sigmoid loss with text chunks passed around a ring (``ring=True``). With W processes
rank r takes rows [r * 8 // W, (r + 1) * 8 // W): 4 + 4 for 2 processes, 2 + 3 + 3 for 3.
    torchrun --standalone --nproc_per_node 2 ddp_worker.py OUT softmax:0:0 sigmoid:1:2:7 ring:0:0 ...
"""
from __future__ import annotations

import sys

import torch

from littune import distributed
from littune.losses import create_loss
from littune.model import LiTModel
from littune.towers import create_image_tower, create_text_tower
from littune.train.step import StepForward, grad_cache_step, plain_step

GLOBAL_BATCH = 8


def build() -> LiTModel:
    torch.manual_seed(0)
    image = create_image_tower("timm:test_efficientnet", pretrained=False, lock="L")
    text = create_text_tower("scratch", lock="u", width=32, depth=2, heads=2, context_length=16)
    return LiTModel(image, text, image_head="linear", embed_dim=16)


def batch(model: LiTModel):
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(GLOBAL_BATCH, model.image.embed_dim, generator=g)
    captions = [f"photo {i} of {'a dog ' * (1 + i % 3)}" for i in range(GLOBAL_BATCH)]
    return feats, captions


def one_step(loss_name: str, local_loss: bool, chunk: int, drop: int | None = None) -> dict:
    rank, world = distributed.rank(), distributed.world_size()
    model = build().train()
    ring = loss_name == "ring"
    loss_fn = create_loss("sigmoid" if ring else loss_name, local_loss=local_loss, ring=ring)
    model.logit_bias.requires_grad_(loss_fn.uses_bias)  # as the trainer does
    feats, captions = batch(model)
    lo, hi = rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world
    mine = [i for i in range(lo, hi) if i != drop]  # this process's rows
    fwd = StepForward(model)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        fwd = DistributedDataParallel(fwd)
    tokens = model.tokenize([captions[i] for i in mine])
    image_kw = {"image_features": feats[mine]}
    if chunk:
        loss = grad_cache_step(fwd, loss_fn, tokens, image_kw, chunk, False)
    else:
        loss = plain_step(fwd, loss_fn, {"tokens": tokens}, image_kw, False)
    loss = distributed.mean_across(loss)
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return {"loss": loss, "grads": grads}


def main(out: str, cases: list[str]) -> None:
    distributed.init_from_env()
    results = {}
    for case in cases:
        loss_name, local, chunk, *drop = case.split(":")
        results[case] = one_step(loss_name, local == "1", int(chunk), int(drop[0]) if drop else None)
    if distributed.rank() == 0:
        torch.save({"world": distributed.world_size(), "results": results}, out)
    distributed.barrier()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
