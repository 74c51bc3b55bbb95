"""Each process draws its own noise: its own seed (seed and rank) for dropout and augmentation.

The 2-process resume test (test_resume_ddp) shows the other half: the processes' random states
differ, so each must save and restore its own (restoring rank 0's state on rank 1 fails that test)."""
from __future__ import annotations

import torch
from PIL import Image

import littune.train.data as data_mod
from littune.cache.items import ImageItem
from littune.distributed import rank_seed
from littune.train.batches import PairSchedule


def test_rank_seeds_differ_and_rank_0_keeps_the_seed():
    assert rank_seed(7, 0) == 7  # one process draws exactly as before
    seeds = [rank_seed(7, r) for r in range(4)]
    assert len(set(seeds)) == 4
    assert rank_seed(7, 1) == rank_seed(7, 1) and rank_seed(7, 1) != rank_seed(8, 1)


def test_live_augmentation_differs_between_ranks_and_repeats_within_one(monkeypatch):
    """The same image at the same step: rank 0 and rank 1 draw different augmentations (before, both
    seeded with seed * 7919 + step and drew the same noise), and a rank draws the same ones again."""
    monkeypatch.setattr(data_mod, "load_image", lambda image, name=None: Image.new("RGB", (4, 4)))
    items = [ImageItem(f"k{i}", f"img{i}.jpg", ["a caption"]) for i in range(8)]

    def noise(rank: int) -> torch.Tensor:
        schedule = PairSchedule([1] * 8, batch_size=4, seed=3, rank=rank, world=2)
        ds = data_mod._LiveBatchDataset(items, schedule, lambda img: torch.rand(5))  # the augmentation's draws
        return ds[2]["pixels"]  # (2, 5)

    a, b = noise(0), noise(1)
    assert a.shape == b.shape == (2, 5)
    assert not torch.equal(a, b)
    torch.testing.assert_close(noise(1), b, rtol=0, atol=0)
