"""The lock proven where the locked tower really runs: a live run (no cache) through a batch-norm tower.

On the cached path the locked tower never executes during training, so a bit-identical tower there
proves little. Here every step runs timm's ``test_efficientnet`` (batch norm) on decoded images: its
weights AND running statistics must come out bit-identical, and a run must refuse to load with a
locked tower whose weights or statistics differ from the ones it was trained with."""
from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from littune.runs import load_run
from littune.runs.weights import WeightsError
from littune.train import Trainer, load_config

from tests.cache.tiny_data import make_dataset

TOWER = "timm:test_efficientnet"


def _overrides(tmp_path, data, tokenizer, *extra):
    return [f"model.image.name={TOWER}", "model.image.pretrained=false", "model.image.lock=L",
            "model.text.name=scratch", f"model.text.tokenizer={tokenizer}", "model.text.width=32",
            "model.text.depth=1", "model.text.heads=2", "model.text.context_length=16", "model.text.dropout=0.1",
            f"data.train={data}", "data.use_cache=false", "data.num_workers=0", f"train.out_dir={tmp_path / 'run'}",
            "train.steps=4", "train.batch_size=8", "train.ckpt_every=0", "train.progress=false", "train.threads=1",
            "optim.warmup_steps=1", "optim.lr=3e-3", *extra]


@pytest.fixture(scope="module")
def live_run(tmp_path_factory, tokenizer_file):
    tmp = tmp_path_factory.mktemp("locked_live")
    data = make_dataset(tmp / "data", 16)
    trainer = Trainer(load_config(None, _overrides(tmp, data, tokenizer_file)))
    assert not trainer.cached  # the live path: images decoded, the tower run every step
    tower = trainer.model.image
    before = {k: v.clone() for k, v in tower.state_dict().items()}
    calls = []
    tower.register_forward_hook(lambda *_: calls.append(1))
    trainer.fit()
    return {"run": tmp / "run", "tower": tower, "before": before, "calls": len(calls), "data": data}


def test_weights_and_running_statistics_are_bit_identical(live_run):
    tower, before = live_run["tower"], live_run["before"]
    assert live_run["calls"] == 4  # it really ran, once a step
    stats = [k for k in before if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(stats) >= 6 and any(k.endswith("weight") for k in before)
    after = tower.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert torch.equal(after[k], v), f"{k} changed during training"
    assert not tower.training or all(not m.training for m in tower.modules() if isinstance(m, nn.BatchNorm2d))

    # The check could fail: the same tower run in training mode moves its statistics at once.
    loose = copy.deepcopy(tower.model)
    nn.Module.train(loose, True)
    with torch.no_grad():
        loose(torch.randn(4, 3, 64, 64))
    moved = loose.state_dict()
    assert any(not torch.equal(moved[k.removeprefix("model.")], before[k]) for k in stats)


def test_a_run_refuses_a_locked_tower_with_other_statistics(live_run, tmp_path):
    run = live_run["run"]
    model, _ = load_run(run)  # as trained: loads
    weights = {k: v.clone().contiguous() for k, v in model.image.model.state_dict().items()}
    source = tmp_path / "tower.safetensors"
    cfg = run / "config.yaml"
    cfg.write_text(cfg.read_text().replace("checkpoint: null", f"checkpoint: {source}", 1))
    save_file(weights, str(source))  # the same weights from a file: still the tower it was trained with
    load_run(run)
    name = next(k for k in weights if k.endswith("running_var"))
    weights[name] *= 1.01  # only a batch-norm statistic differs
    save_file(weights, str(source))
    with pytest.raises(WeightsError, match=r"the locked image tower's weights differ from training"):
        load_run(run)
