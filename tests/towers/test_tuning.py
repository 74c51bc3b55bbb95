"""model.text.tune (full | lora | norms), merging LoRA adapters, and weight-space interpolation, on tiny
local BERT and T5 encoders (towers/tuning.py)."""
from __future__ import annotations

import pytest
import torch

from littune.config import ConfigError
from littune.towers.config import TextTowerConfig
from littune.towers.lock import fingerprint
from littune.towers.tuning import LoraOptions, apply_tuning, interpolate, lora_layers, merge_lora

TEXTS = ["a dog runs on the grass", "two people ride bikes down a hill", "a small boat"]


def build(hf_text_dirs, family="bert", **kw):
    return TextTowerConfig(name=f"hf:{hf_text_dirs[family]}", context_length=16, **kw).build()


def features(tower):
    tower.eval()  # no dropout
    with torch.no_grad():
        return tower(tower.tokenizer(TEXTS))


def trainable(tower) -> list[str]:
    return [n for n, p in tower.named_parameters() if p.requires_grad]


def perturb(tower, names=None, seed=0):
    """Stand-in for training: add noise to the trainable parameters (or the named ones)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in tower.named_parameters():
            if (n in names) if names is not None else p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return tower


# ---- what trains -----------------------------------------------------------------------------------
@pytest.mark.parametrize("family, n_adapted", [("bert", 12), ("t5", 12)])
def test_lora_only_adapters_get_gradients(hf_text_dirs, family, n_adapted):
    tower = build(hf_text_dirs, family, tune="lora", lora_rank=4)
    assert tower.tune == "lora" and len(lora_layers(tower.model)) == n_adapted  # 6 projections x 2 layers
    names = trainable(tower)
    assert names and all(".lora_A." in n or ".lora_B." in n for n in names)
    base = {n: p.detach().clone() for n, p in tower.named_parameters() if not p.requires_grad}
    perturb(tower)  # B != 0, so A gets gradients too
    tower.train()
    tower(tower.tokenizer(TEXTS)).pow(2).mean().backward()
    with_grad = {n for n, p in tower.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad == set(names)
    assert all(torch.equal(p, base[n]) for n, p in tower.named_parameters() if n in base)
    # rank 4 on (in, out) projections: 4 * (in + out) parameters each
    expected = sum(4 * (m.in_features + m.out_features) for m in lora_layers(tower.model).values())
    assert tower.describe()["trainable_params"] == expected


def test_fresh_lora_tower_computes_the_pretrained_features(hf_text_dirs):
    full, lora = build(hf_text_dirs), build(hf_text_dirs, tune="lora")
    assert torch.equal(features(lora), features(full))  # B starts at zero: the adapters add nothing
    assert lora.base_fingerprint == full.base_fingerprint == full.fingerprint()


def test_lora_respects_locked_blocks(hf_text_dirs):
    tower = build(hf_text_dirs, tune="lora", locked_blocks=2)  # embeddings + layer 0 locked
    assert lora_layers(tower.model) and all(n.startswith("encoder.layer.1.") for n in lora_layers(tower.model))
    tower = build(hf_text_dirs, tune="lora", lora_targets=["query", "value"])
    assert sorted({n.rsplit(".", 1)[-1] for n in lora_layers(tower.model)}) == ["query", "value"]


@pytest.mark.parametrize("family", ["bert", "t5"])
def test_norms_trains_only_layernorms(hf_text_dirs, family):
    tower = build(hf_text_dirs, family, tune="norms", locked_blocks=1)
    names = trainable(tower)
    assert names and all("layernorm" in n.lower().replace("_", "") for n in names), names
    if family == "bert":  # the embeddings' LayerNorm sits in the locked group
        assert "model.embeddings.LayerNorm.weight" not in names
        assert sorted(n for n in names if "layer.0." in n) == [
            f"model.encoder.layer.0.{m}.LayerNorm.{w}" for m in ("attention.output", "output") for w in ("bias", "weight")]
    else:
        assert "model.encoder.final_layer_norm.weight" in names
    tower.train()
    tower(tower.tokenizer(TEXTS)).sum().backward()
    assert {n for n, p in tower.named_parameters() if p.grad is not None} == set(names)


def test_full_is_unchanged(hf_text_dirs):
    tower = build(hf_text_dirs, locked_blocks=1)
    assert tower.tune == "full" and len(trainable(tower)) == sum(
        1 for n, _ in tower.model.encoder.named_parameters()) and not lora_layers(tower.model)


# ---- merging ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["bert", "t5"])
def test_merged_lora_equals_the_adapters(hf_text_dirs, family):
    tower = perturb(build(hf_text_dirs, family, tune="lora", lora_rank=2, lora_alpha=8.0).eval())
    before = features(tower)
    plain = build(hf_text_dirs, family)
    merge_lora(tower)
    assert tower.tune == "full" and not lora_layers(tower.model)
    assert set(tower.state_dict()) == set(plain.state_dict())  # a plain tower's layout: loads into tune=full
    after = features(tower)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)
    assert not torch.equal(after, features(plain))  # the adapters did change the features


# ---- interpolation ----------------------------------------------------------------------------------
def test_interpolate_full_tower_endpoints_and_middle(hf_text_dirs):
    pretrained = build(hf_text_dirs, locked_blocks=1)
    trained = perturb(build(hf_text_dirs, locked_blocks=1))
    theta1 = {k: v.clone() for k, v in trained.state_dict().items()}
    theta0 = pretrained.state_dict()

    def mixed(alpha):
        t = build(hf_text_dirs, locked_blocks=1)
        t.load_state_dict(theta1)
        return interpolate(t, alpha, lambda: build(hf_text_dirs, locked_blocks=1))

    assert fingerprint(mixed(0.0)) == pretrained.fingerprint()
    assert torch.equal(features(mixed(0.0)), features(pretrained))
    assert fingerprint(mixed(1.0)) == fingerprint(trained)
    half = mixed(0.5).state_dict()
    changed = 0
    for k, v in half.items():
        if v.is_floating_point():
            lo, hi = torch.minimum(theta0[k], theta1[k]), torch.maximum(theta0[k], theta1[k])
            assert (v >= lo).all() and (v <= hi).all(), k
            torch.testing.assert_close(v, (theta0[k] + theta1[k]) / 2, rtol=0, atol=1e-6)
            changed += int(not torch.equal(v, theta1[k]))
    assert changed > 0


def test_interpolate_lora_scales_the_adapters(hf_text_dirs):
    plain = build(hf_text_dirs)
    tower = perturb(build(hf_text_dirs, tune="lora"))
    trained = features(tower)
    b = {n: p.clone() for n, p in tower.named_parameters() if ".lora_B." in n}
    assert torch.equal(features(interpolate(tower, 1.0)), trained)
    interpolate(tower, 0.5)
    assert all(torch.equal(p, b[n] * 0.5) for n, p in tower.named_parameters() if n in b)
    assert torch.equal(features(interpolate(tower, 0.0)), features(plain))  # exactly the pre-trained tower


def test_interpolate_refuses_what_it_cannot_mix(hf_text_dirs, tmp_path):
    tower = build(hf_text_dirs)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
            interpolate(tower, bad, lambda: tower)
    other = build(hf_text_dirs, "t5")  # a different pre-trained source
    with pytest.raises(ValueError, match="fingerprint.*source changed"):
        interpolate(tower, 0.5, lambda: other, where="model.text.name=hf:x")
    random = TextTowerConfig(name=f"hf:{hf_text_dirs['bert']}", lock="u").build()
    with pytest.raises(ValueError, match="needs the pre-trained weights"):
        interpolate(random, 0.5, lambda: tower)


# ---- bad configs ------------------------------------------------------------------------------------
def test_tuning_options_on_towers_without_such_modules(hf_text_dirs):
    with pytest.raises(ValueError, match="model.text.tune=lora.*scratch tower has none"):
        TextTowerConfig(name="scratch", tune="lora", width=32, depth=1, heads=2).build()
    with pytest.raises(ValueError, match=r"model.text.lora_targets: \['nope'\] match no"):
        build(hf_text_dirs, tune="lora", lora_targets=["query", "nope"])
    mystery = build(hf_text_dirs)
    mystery.model.config.model_type = "mystery"
    with pytest.raises(ValueError, match="model.text.lora_targets: no default LoRA targets for a 'mystery' tower"):
        apply_tuning(mystery, "lora", LoraOptions())
    with pytest.raises(ValueError, match="no Linear module.*locked_blocks=3"):
        build(hf_text_dirs, tune="lora", locked_blocks=3)
    with pytest.raises(ValueError, match="model.text.tune=norms needs model.text.lock=U"):
        build(hf_text_dirs, tune="norms", lock="L")
    with pytest.raises(ValueError, match="model.text.lora_rank=0"):
        build(hf_text_dirs, tune="lora", lora_rank=0)
    with pytest.raises(ValueError, match="model.text.tune='adapters' is not a tuning mode"):
        build(hf_text_dirs, tune="adapters")


def test_experiment_validation_names_the_keys():
    from littune.train import load_config
    from littune.config.experiment import validate

    base = ["data.train=x.csv"]
    with pytest.raises(ConfigError, match="model.text.tune='lowrank'"):
        validate(load_config(None, base + ["model.text.tune=lowrank"]))
    with pytest.raises(ConfigError, match=r"train.interpolate_alpha=1.5 must lie in \[0, 1\]"):
        validate(load_config(None, base + ["train.interpolate_alpha=1.5"]))
    with pytest.raises(ConfigError, match="train.interpolate_alpha=0.5 mixes.*lock=L"):
        validate(load_config(None, base + ["train.interpolate_alpha=0.5", "model.text.lock=L"]))
    validate(load_config(None, base + ["train.interpolate_alpha=0.5", "model.text.tune=lora"]))
