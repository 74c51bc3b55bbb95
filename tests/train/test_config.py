"""Experiment configs: typed keys, YAML files with `_base_`, dotted overrides, `littune train --print-config`."""
from __future__ import annotations

import warnings

import pytest
from omegaconf import OmegaConf

from littune.cli import main
from littune.train import ConfigError, ExperimentConfig, load_config, to_yaml
from littune.config import ConfigWarning, validate


def test_defaults():
    cfg = load_config()
    assert isinstance(cfg, ExperimentConfig)
    assert cfg == ExperimentConfig()
    assert (cfg.model.image.lock, cfg.model.text.lock, cfg.train.loss) == ("L", "U", "softmax")


@pytest.mark.parametrize("override, key", [
    ("train.stepz=3", "train.stepz"),
    ("model.image.colour=red", "model.image.colour"),
    ("nonsense=1", "nonsense"),
])
def test_unknown_key_is_rejected_with_its_name(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


@pytest.mark.parametrize("override, key", [
    ("train.steps=many", "train.steps"),
    ("optim.lr=fast", "optim.lr"),
    ("data.use_cache=perhaps", "data.use_cache"),
    ("train.batch_size=1.5", "train.batch_size"),
])
def test_wrong_type_is_rejected_with_its_name(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as e:
        load_config(None, [override])
    assert override in str(e.value)  # says which override was wrong


def test_yaml_errors_name_the_file_and_key(tmp_path):
    bad_key = tmp_path / "bad_key.yaml"
    bad_key.write_text("train:\n  steps: 10\n  lerning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="lerning_rate") as e:
        load_config(bad_key)
    assert str(bad_key) in str(e.value)
    bad_type = tmp_path / "bad_type.yaml"
    bad_type.write_text("optim:\n  warmup_steps: soon\n")
    with pytest.raises(ConfigError, match=r"optim\.warmup_steps"):
        load_config(bad_type)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["train.steps"])


def test_base_inheritance_and_overrides(tmp_path):
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "base.yaml").write_text(
        "name: base\nmodel:\n  text:\n    name: scratch\n    width: 64\ntrain:\n  steps: 5\n  batch_size: 32\n"
        "optim:\n  lr: 0.01\n")
    (tmp_path / "mid.yaml").write_text("_base_: common/base.yaml\nname: mid\ntrain:\n  steps: 7\n")
    (tmp_path / "exp").mkdir()
    child = tmp_path / "exp" / "child.yaml"
    child.write_text("_base_: ../mid.yaml\nname: child\noptim:\n  warmup_steps: 3\n")

    cfg = load_config(child)
    assert cfg.name == "child"
    assert cfg.train.steps == 7  # from mid, over base
    assert cfg.train.batch_size == 32 and cfg.optim.lr == 0.01  # from base
    assert cfg.model.text.name == "scratch" and cfg.model.text.width == 64
    assert cfg.optim.warmup_steps == 3
    assert cfg.model.text.depth == ExperimentConfig().model.text.depth  # untouched defaults stay

    cfg = load_config(child, ["train.steps=9", "model.text.width=128", "model.image.kwargs={img_size: 64}"])
    assert (cfg.train.steps, cfg.model.text.width, cfg.optim.lr) == (9, 128, 0.01)
    assert cfg.model.image.kwargs == {"img_size": 64}

    (tmp_path / "a.yaml").write_text("_base_: b.yaml\n")
    (tmp_path / "b.yaml").write_text("_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_yaml_round_trip(tmp_path):
    cfg = load_config(None, ["train.steps=42", "model.text.name=scratch", "optim.lr=0.003", "data.train=x.csv"])
    path = tmp_path / "cfg.yaml"
    path.write_text(to_yaml(cfg))
    assert load_config(path) == cfg


@pytest.mark.parametrize("override, key", [
    ("train.loss=hinge", "train.loss"),
    ("train.precision=fp16", "train.precision"),
    ("train.batch_size=1", "train.batch_size"),
    ("train.steps=0", "train.steps"),
    ("model.image.lock=X", "model.image.lock"),
    ("model.text.lock=locked", "model.text.lock"),
])
def test_validate_names_the_key(override, key):
    cfg = load_config(None, ["data.train=x.csv", override])
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        validate(cfg)


def test_warmup_longer_than_training_is_a_stated_warning(capsys):
    cfg = load_config(None, ["data.train=x.csv", "train.steps=10", "optim.warmup_steps=50"])
    with pytest.warns(ConfigWarning, match=r"optim\.warmup_steps=50 > train\.steps=10: .* peaks at 20% of optim\.lr"):
        validate(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate(load_config(None, ["data.train=x.csv", "train.steps=50", "optim.warmup_steps=50"]))
    # The command line says it in one line before going on (here to the missing data's error).
    assert main(["train", "train.steps=10", "optim.warmup_steps=50"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("littune train: warning: optim.warmup_steps=50 > train.steps=10")
    assert "data.train" in err[1]


def test_validate_needs_training_data():
    with pytest.raises(ConfigError, match="data.train"):
        validate(load_config())
    validate(load_config(None, ["data.train_cache=some/cache"]))


def test_print_config(tmp_path, capsys):
    base = tmp_path / "exp.yaml"
    base.write_text("train:\n  steps: 11\n")
    assert main(["train", "--config", str(base), "--print-config", "optim.lr=0.02", "model.text.lock=L"]) == 0
    out = capsys.readouterr().out
    printed = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ExperimentConfig), OmegaConf.create(out)))
    assert printed == load_config(base, ["optim.lr=0.02", "model.text.lock=L"])
    assert printed.train.steps == 11 and printed.optim.lr == 0.02 and printed.model.text.lock == "L"
    assert not (tmp_path / "runs").exists()

    assert main(["train", "--print-config", "train.stepz=1"]) == 2
    assert "train.stepz" in capsys.readouterr().err
