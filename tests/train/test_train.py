"""LiT training on tiny data: the loss goes down, the run directory holds everything, the lock holds."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from littune.cache import EmbedOptions, embed
from littune.train import NonFiniteLoss, Trainer, load_config
from littune.runs import list_checkpoints
from littune.train.optim import lr_factor

from tests.cache.tiny_data import load_tower, make_dataset, model_overrides

STEPS, WARMUP, LR, WD = 30, 5, 1e-3, 0.05


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train_data")
    return {"train": make_dataset(root / "train", 48, seed=0), "dev": make_dataset(root / "dev", 16, seed=1)}


def _overrides(tmp_path: Path, weights: Path, data: dict, steps: int, *extra: str, lock: str = "L",
               tokenizer: str | Path = "train") -> list[str]:
    return model_overrides(weights, image_lock=lock, tokenizer=tokenizer) + [
        f"data.train={data['train']}", f"data.cache_root={tmp_path / 'cache'}", "data.num_workers=0",
        f"train.out_dir={tmp_path / 'run'}", f"train.steps={steps}", "train.batch_size=16", "train.log_every=1",
        "train.ckpt_every=10", "train.progress=false", f"optim.warmup_steps={WARMUP}", f"optim.lr={LR}",
        f"optim.weight_decay={WD}", *extra]


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _losses(run: Path) -> list[float]:
    return [r["loss"] for r in _metrics(run) if "loss" in r]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tower_weights, data):
    """One 30-step run on the cache with dev retrieval every 10 steps."""
    tmp = tmp_path_factory.mktemp("tiny_run")
    cfg = load_config(None, _overrides(tmp, tower_weights, data, STEPS, f"data.dev={data['dev']}",
                                       "train.eval_every=10"))
    trainer = Trainer(cfg)
    before = trainer.model.fingerprints()
    groups = [{"names": [n for n, p in trainer.model.named_parameters() if any(p is q for q in g["params"])],
               "weight_decay": g["weight_decay"], "lr": g["lr"]} for g in trainer.optimizer.param_groups]
    summary = trainer.fit()
    return {"run": tmp / "run", "summary": summary, "before": before, "groups": groups, "trainer": trainer}


def test_loss_goes_down(tiny_run):
    losses = _losses(tiny_run["run"])
    assert len(losses) == STEPS and all(math.isfinite(x) for x in losses)
    assert losses[0] > 0.9 * math.log(16)  # starts near chance for a batch of 16
    start, end = np.mean(losses[:3]), np.mean(losses[-3:])
    assert end < start - 0.8, losses


def test_run_directory(tiny_run):
    run = tiny_run["run"]
    for name in ("config.yaml", "metrics.jsonl", "model.safetensors", "model_info.json", "summary.json",
                 "cache_manifest.json", "tokenizer/tokenizer.json"):
        assert (run / name).is_file(), name
    assert [p.name for p in list_checkpoints(run)] == ["step_0000020", "step_0000030"]  # keep_checkpoints=2
    for ckpt in list_checkpoints(run):
        assert {p.name for p in ckpt.iterdir()} == {"model.safetensors", "model_info.json", "state.pt",
                                                    "config.yaml", "cache_manifest.json"}  # what --resume checks
    assert not list((run / "checkpoints").glob(".tmp*"))
    events = list((run / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0

    # The config written is the one used, and loads back.
    cfg = load_config(run / "config.yaml")
    assert (cfg.train.steps, cfg.optim.lr, cfg.model.text.width) == (STEPS, LR, 32)

    # The cache the run trained on is recorded.
    manifest = json.loads((run / "cache_manifest.json").read_text())
    assert manifest["complete"] and manifest["count"] == 48 and manifest["tower"] == "timm:test_vit"

    rows = [r for r in _metrics(run) if "loss" in r]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    for r in rows:
        assert {"step", "loss", "temperature", "lr", "examples_per_s"} <= set(r)
        assert r["examples_per_s"] > 0 and r["temperature"] > 0
    dev = [r for r in _metrics(run) if "dev/i2t_r1" in r]
    assert [r["step"] for r in dev] == [10, 20, 30]
    assert all(0 <= r["dev/t2i_r5"] <= 1 for r in dev)

    summary = json.loads((run / "summary.json").read_text())
    assert summary["step"] == STEPS
    assert summary["fingerprints"] == tiny_run["summary"]["fingerprints"]
    assert set(summary["dev"]) >= {"i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5"}


def test_locked_tower_unchanged_text_tower_trained(tiny_run, tower):
    before, after = tiny_run["before"], tiny_run["summary"]["fingerprints"]
    assert before["image"] == after["image"] == tower.fingerprint()
    assert before["text"] != after["text"]
    info = json.loads((tiny_run["run"] / "model_info.json").read_text())
    assert info["not_saved"] == ["image."] and info["fingerprints"] == after
    weights = load_file(str(tiny_run["run"] / "model.safetensors"))
    assert not [k for k in weights if k.startswith("image.")]
    assert {"logit_scale", "logit_bias"} <= set(weights)
    assert any(k.startswith("text.") for k in weights) and any(k.startswith("text_head.") for k in weights)
    model = tiny_run["trainer"].model
    for k, v in weights.items():
        assert torch.equal(v, model.state_dict()[k]), k


def test_weight_decay_only_on_matrices(tiny_run):
    model = tiny_run["trainer"].model
    params = dict(model.named_parameters())
    decayed = [n for g in tiny_run["groups"] if g["weight_decay"] > 0 for n in g["names"]]
    plain = [n for g in tiny_run["groups"] if g["weight_decay"] == 0 for n in g["names"]]
    assert all(g["weight_decay"] in (0.0, WD) for g in tiny_run["groups"])
    assert decayed and all(params[n].ndim >= 2 for n in decayed)
    assert "logit_scale" in plain
    # The softmax loss has no bias: it is frozen (an unused parameter would stall DDP's buckets).
    assert "logit_bias" not in decayed + plain and not params["logit_bias"].requires_grad
    assert all(params[n].ndim < 2 for n in plain if n not in ("logit_scale", "logit_bias"))
    assert any(n.endswith("bias") and n.startswith("text") for n in plain)  # 1-d: biases, norms
    assert any("norm" in n for n in plain)
    # Every trainable parameter is in exactly one group; the locked tower in none.
    assert sorted(decayed + plain) == sorted(n for n, p in params.items() if p.requires_grad)
    assert not [n for n in decayed + plain if n.startswith("image.")]


def test_lr_warmup_then_cosine(tiny_run):
    lrs = [r["lr"] for r in _metrics(tiny_run["run"]) if "loss" in r]
    # Row s is step s (1-based): it used the lr of step index s - 1.
    want = [LR * lr_factor(i, WARMUP, STEPS, 0.0) for i in range(STEPS)]
    np.testing.assert_allclose(lrs, want, rtol=1e-6)
    assert lrs[0] == pytest.approx(LR / WARMUP)
    assert all(a < b for a, b in zip(lrs[:WARMUP - 1], lrs[1:WARMUP]))  # linear warmup
    assert max(lrs) == pytest.approx(LR) and int(np.argmax(lrs)) == WARMUP - 1
    assert all(a > b for a, b in zip(lrs[WARMUP:-1], lrs[WARMUP + 1:]))  # cosine decay
    assert lrs[-1] < 0.01 * LR
    mid = WARMUP + (STEPS - WARMUP) // 2  # halfway through the decay: half the peak
    assert lrs[mid] == pytest.approx(LR * 0.5 * (1 + math.cos(math.pi * (mid - WARMUP) / (STEPS - WARMUP))))


@pytest.mark.parametrize("loss, precision", [("sigmoid", "fp32"), ("softmax", "bf16"), ("sigmoid", "bf16")])
def test_other_loss_and_precision(tmp_path, tower_weights, data, loss, precision):
    cfg = load_config(None, _overrides(tmp_path, tower_weights, data, 20, f"train.loss={loss}",
                                       f"train.precision={precision}", "train.ckpt_every=0"))
    summary = Trainer(cfg).fit()
    losses = _losses(tmp_path / "run")
    assert len(losses) == 20 and all(math.isfinite(x) for x in losses)
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
    assert summary["step"] == 20
    if loss == "sigmoid":  # the learned bias moved from its start
        assert _metrics(tmp_path / "run")[-1]["bias"] != -10.0


def test_live_path_without_cache(tmp_path, tower_weights, data, tower):
    cfg = load_config(None, _overrides(tmp_path, tower_weights, data, 3, "data.use_cache=false"))
    trainer = Trainer(cfg)
    assert not trainer.cached
    summary = trainer.fit()
    assert summary["step"] == 3 and summary["fingerprints"]["image"] == tower.fingerprint()
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run" / "cache_manifest.json").exists()
    assert len(_losses(tmp_path / "run")) == 3


def test_live_path_matches_cached_path(tmp_path, tower_weights, tokenizer_file, data):
    """Same batches and the same features (a float32 cache): the two paths give the same losses."""
    cache = tmp_path / "cache32"
    embed(str(data["train"]), load_tower(tower_weights), cache,
          EmbedOptions(dtype="float32", num_workers=0, progress=False, batch_size=16))
    losses = {}
    for name, extra in (("cached", f"data.train_cache={cache}"), ("live", "data.use_cache=false")):
        cfg = load_config(None, _overrides(tmp_path / name, tower_weights, data, 3, extra, "train.ckpt_every=0",
                                           tokenizer=tokenizer_file))
        Trainer(cfg).fit()
        losses[name] = _losses(tmp_path / name / "run")
    np.testing.assert_allclose(losses["cached"], losses["live"], rtol=1e-4)


def test_unlocked_image_tower(tmp_path, tower_weights, data, tower):
    cfg = load_config(None, _overrides(tmp_path, tower_weights, data, 3, lock="U"))
    trainer = Trainer(cfg)
    assert not trainer.cached
    trained = {n for g in trainer.optimizer.param_groups for p in g["params"]
               for n, q in trainer.model.named_parameters() if q is p}
    assert any(n.startswith("image.") for n in trained)
    summary = trainer.fit()
    assert summary["fingerprints"]["image"] != tower.fingerprint()  # the image tower was trained
    info = json.loads((tmp_path / "run" / "model_info.json").read_text())
    assert info["not_saved"] == []
    assert any(k.startswith("image.") for k in load_file(str(tmp_path / "run" / "model.safetensors")))
    assert not (tmp_path / "run" / "cache_manifest.json").exists()


def test_non_finite_loss_stops_without_a_checkpoint(tmp_path, tower_weights, data):
    cfg = load_config(None, _overrides(tmp_path, tower_weights, data, 10, "train.ckpt_every=2"))
    trainer = Trainer(cfg)
    loss_fn = trainer.loss_fn

    def poisoned(*args, **kwargs):
        loss = loss_fn(*args, **kwargs)
        return loss * float("nan") if trainer.step == 5 else loss

    trainer.loss_fn = poisoned
    with pytest.raises(NonFiniteLoss) as e:
        trainer.fit()
    msg = str(e.value)
    run = tmp_path / "run"
    assert "at step 5" in msg and "nan" in msg.lower()
    assert str(run / "checkpoints" / "step_0000004") in msg and "--resume" in msg
    assert [p.name for p in list_checkpoints(run)] == ["step_0000002", "step_0000004"]
    assert not list((run / "checkpoints").glob(".tmp*"))
    assert not (run / "model.safetensors").exists() and not (run / "summary.json").exists()
    assert [r["step"] for r in _metrics(run)] == [1, 2, 3, 4, 5]


def test_same_config_gives_the_same_model_whether_the_cache_existed_or_not(tmp_path, tower_weights, tokenizer_file,
                                                                          data):
    """The first run embeds the data set (and draws random numbers doing it); the second finds the cache."""
    weights = []
    for name in ("first", "second"):
        cfg = load_config(None, _overrides(tmp_path, tower_weights, data, 3, f"train.out_dir={tmp_path / name}",
                                           "train.ckpt_every=0", tokenizer=tokenizer_file))
        Trainer(cfg).fit()
        weights.append(load_file(str(tmp_path / name / "model.safetensors")))
    assert weights[0].keys() == weights[1].keys()
    for k in weights[0]:
        assert torch.equal(weights[0][k], weights[1][k]), k


def test_trained_tokenizer_is_reproducible(tmp_path, tower_weights, data):
    """Three tokenizer=train runs in one process: one vocabulary (the trainer's ties are fixed)."""
    vocabs = []
    for name in ("a", "b", "c"):
        cfg = load_config(None, _overrides(tmp_path, tower_weights, data, 1, f"train.out_dir={tmp_path / name}"))
        Trainer(cfg)
        vocabs.append(json.loads((tmp_path / name / "tokenizer" / "tokenizer.json").read_text())["model"]["vocab"])
    assert vocabs[0] == vocabs[1] == vocabs[2]
