"""`littune train` on live images under a 2-process torchrun, one image undecodable on rank 1: rank 1
trains on 3 pairs, rank 0 on 4, the gather carries both counts, and the run trains the model one
process trains on the 7 pairs left; the bad image is listed once in bad_inputs.tsv (written by rank 0)."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from littune.train import Trainer, load_config
from littune.train.batches import PairSchedule

from tests.cache.conftest import tokenizer_file, tower_weights  # noqa: F401  (fixtures)
from tests.cache.tiny_data import _BOOT, make_dataset, model_overrides
from tests.distributed.test_embed_ranks import Launched, torchrun

N, BATCH, STEPS = 16, 8, 2  # one epoch: every image once


@pytest.mark.xdist_group("torchrun")
def test_a_bad_image_on_one_rank_trains_the_one_process_model(tmp_path, tower_weights, tokenizer_file):  # noqa: F811
    csv = make_dataset(tmp_path / "data", N)
    rows, _, _ = PairSchedule([1] * N, BATCH, seed=0, rank=1, world=2).batch(0)  # rank 1's images at step 0
    bad = f"images/img_{int(rows[0]):03d}.jpg"
    (tmp_path / "data" / bad).write_bytes(b"not a jpeg")
    boot = tmp_path / "boot.py"
    boot.write_text(_BOOT)

    def overrides(run):
        return model_overrides(tower_weights, tokenizer=tokenizer_file) + [
            f"data.train={csv}", "data.use_cache=false", "data.num_workers=0", f"train.out_dir={run}",
            f"train.steps={STEPS}", f"train.batch_size={BATCH}", "train.log_every=1", "train.ckpt_every=0",
            "train.progress=false", "train.threads=1", "optim.warmup_steps=1", "optim.lr=2e-3",
            "model.text.dropout=0.0", "train.loss=sigmoid"]

    launched = Launched(torchrun(boot, ["train", *overrides(tmp_path / "two"), "--json"]), tmp_path / "two")
    try:
        one = Trainer(load_config(None, overrides(tmp_path / "one"))).fit()  # here, 1 process, meanwhile
        two_dir = launched.result()
    finally:
        launched.stop()
    two = json.loads(launched.stdout.splitlines()[-1])
    assert one["bad_inputs"] == two["bad_inputs"] == 1 and two["world_size"] == 2
    listed = (two_dir / "bad_inputs.tsv").read_text().splitlines()
    assert len(listed) == 2 and listed[1].startswith(bad)  # header + rank 1's bad image, once
    a, b = load_file(str(tmp_path / "one" / "model.safetensors")), load_file(str(two_dir / "model.safetensors"))
    for k in a:  # the same 7 pairs each step: equal up to float summation order
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    losses = [[json.loads(r)["loss"] for r in (d / "metrics.jsonl").read_text().splitlines() if '"loss"' in r]
              for d in (tmp_path / "one", two_dir)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
