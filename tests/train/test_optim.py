"""optim.decay_convention (torch AdamW vs big_vision's optax.make), Adam's eps, zero lr multipliers."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from littune.config import ExperimentConfig, load_config, validate
from littune.config.loader import ConfigError
from littune.train import Trainer
from littune.train.optim import build_optimizer, build_scheduler, lr_factor

from tests.train.test_train import _overrides, data  # noqa: F401  (fixture)


class _Toy(nn.Module):
    """The names LiTModel's parameters have: a text tower (embedding, LayerNorm, Linear), a head, the scale."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.text = nn.ModuleDict({"emb": nn.Embedding(10, 4), "norm": nn.LayerNorm(4), "fc": nn.Linear(4, 4)})
        self.text_head = nn.Linear(4, 3)
        self.logit_scale = nn.Parameter(torch.tensor(2.3))


def _one_step_without_gradient(convention: str, lr: float, wd: float, step: int = 3) -> dict[str, torch.Tensor]:
    """Weights after one optimiser step at schedule step ``step`` with zero gradients: only decay moves them."""
    cfg = ExperimentConfig()
    cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.decay_convention = lr, wd, convention
    cfg.optim.warmup_steps, cfg.train.steps = 10, 100
    model = _Toy()
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg)
    for _ in range(step):  # the schedule's step ``step`` (no optimiser step before: nothing moves)
        opt.step()
        sched.step()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_big_vision_decay_is_wd_times_schedule_on_kernels_only():
    before = {n: p.detach().clone() for n, p in _Toy().named_parameters()}
    s = lr_factor(3, 10, 100, 0.0)  # 0.4: the warmup's 4th step
    for lr in (1e-3, 1e-1):  # independent of the peak learning rate
        after = _one_step_without_gradient("big_vision", lr, wd=0.01)
        for name in ("text.fc.weight", "text_head.weight"):  # kernels: w * (1 - wd * s)
            torch.testing.assert_close(after[name], before[name] * (1 - 0.01 * s), rtol=1e-6, atol=0)
        for name in ("text.emb.weight", "text.norm.weight", "text.fc.bias", "logit_scale"):
            torch.testing.assert_close(after[name], before[name], rtol=0, atol=0)


def test_adamw_decay_scales_with_the_learning_rate_on_every_matrix():
    before = {n: p.detach().clone() for n, p in _Toy().named_parameters()}
    s = lr_factor(3, 10, 100, 0.0)
    after = _one_step_without_gradient("adamw", 1e-3, wd=0.01)
    for name in ("text.fc.weight", "text_head.weight", "text.emb.weight"):  # ndim >= 2, embeddings too
        torch.testing.assert_close(after[name], before[name] * (1 - 1e-3 * s * 0.01), rtol=1e-7, atol=0)
    torch.testing.assert_close(after["text.fc.bias"], before["text.fc.bias"], rtol=0, atol=0)


def test_adam_eps_reaches_the_optimiser():
    cfg = ExperimentConfig()
    cfg.optim.eps = 1e-8
    assert all(g["eps"] == 1e-8 for g in build_optimizer(_Toy(), cfg).param_groups)


def test_unknown_decay_convention_is_refused_naming_the_key(tmp_path):
    cfg = load_config(None, ["optim.decay_convention=optax", f"data.train={tmp_path}"])
    with pytest.raises(ConfigError, match="optim.decay_convention='optax'.*adamw.*big_vision"):
        validate(cfg)


def test_zero_scale_lr_mult_trains_with_the_temperature_frozen_and_says_so(tmp_path, tower_weights, data, capsys):
    cfg = load_config(None, _overrides(tmp_path, tower_weights, data, 3, "optim.scale_lr_mult=0",
                                            "optim.warmup_steps=1"))
    trainer = Trainer(cfg)
    before = trainer.model.logit_scale.detach().clone()
    text_before = next(trainer.model.text.parameters()).detach().clone()
    summary = trainer.fit()  # crashed with ZeroDivisionError in the lr log line
    assert summary["step"] == 3
    assert "optim.scale_lr_mult=0: 1 parameter(s) frozen, not trained (logit_scale)" in capsys.readouterr().err
    assert torch.equal(trainer.model.logit_scale.detach(), before)
    assert not torch.equal(next(trainer.model.text.parameters()).detach(), text_before)  # the rest trained
