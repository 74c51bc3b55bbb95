"""Every numeric CLI option and config key has one declared range, and every edge value meets it.

The test walks the argparse parser and the experiment config's dataclasses: a numeric option or key
declared without a range fails here. Each is fed 0, -1, a huge value, NaN, infinity and a string;
the answer is a one-line error naming the option or key, or (0 and -1 inside the range) a meaning
the help states. Before: `embed --shard-size -5` wrote an empty cache marked complete,
`model.text.depth=0` ended in an IndexError, `mlp_ratio=0` and `vocab_size=0` trained silently.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import typing

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from littune.cli import build_parser
from littune.commands.base import Number
from littune.config.experiment import ExperimentConfig, load_config, validate
from littune.config.loader import ConfigError
from littune.config.ranges import RANGES, check_key

EDGES = ["0", "-1", "1000000000000000000000", "1e30", "nan", "inf", "-inf", "abc"]


def _options() -> list[tuple[str, argparse.Action, argparse.ArgumentParser]]:
    parser, _ = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [(name, action, sp) for name, sp in sub.choices.items() for action in sp._actions]


def test_every_numeric_option_declares_a_range():
    bare = [f"{name} {a.option_strings}" for name, a, _ in _options() if a.type in (int, float)]
    assert not bare, f"numeric options without a range (use type=Number(...)): {bare}"
    ranged = [a for _, a, _ in _options() if isinstance(a.type, Number)]
    assert len(ranged) >= 20
    for a in ranged:  # a huge value is never accepted: no typo allocates or loops for ever
        assert a.type.high is not None, a.option_strings


@pytest.mark.parametrize("value", EDGES)
def test_every_ranged_option_refuses_or_means_each_edge(value, capsys):
    for name, action, sp in _options():
        if not isinstance(action.type, Number):
            continue
        option = action.option_strings[0]
        try:
            number = action.type.kind(value)
        except ValueError:
            number = None
        if number is not None and action.type.accepts(number):
            assert action.type(value) == number
            if number == 0:  # accepted 0 has a stated meaning, or is the plain count of nothing
                assert "0:" in (action.help or "") or name in ("interpolate",), (name, option, action.help)
            assert number >= 0, (name, option)  # -1 is never a silent "default"
            continue
        with pytest.raises(SystemExit) as stop:
            sp.parse_args([f"{option}={value}" if option.startswith("--") else option + value])  # "-inf" too
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"argument {option}" in err and value in err, err


def test_embed_negative_shard_size_is_refused_in_one_line():
    from littune.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["embed", "--data", "x.csv", "--out", "o", "--shard-size", "-5"])
    assert stop.value.code == 2


def _numeric_keys(schema: type, prefix: str = "") -> list[str]:
    keys = []
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        t = hints[f.name]
        args = [a for a in typing.get_args(t) if a is not type(None)]
        base = args[0] if typing.get_origin(t) is typing.Union and len(args) == 1 else t
        if dataclasses.is_dataclass(base):
            keys += _numeric_keys(base, f"{prefix}{f.name}.")
        elif base in (int, float):
            keys.append(f"{prefix}{f.name}")
    return keys


def test_every_numeric_config_key_declares_a_range():
    keys = _numeric_keys(ExperimentConfig)
    assert len(keys) >= 40
    assert sorted(set(keys) - set(RANGES)) == [], "numeric config keys without a range in littune/config/ranges.py"
    assert sorted(set(RANGES) - set(keys)) == []
    for key, (_, high) in RANGES.items():
        assert high is not None, key


@pytest.fixture(scope="module")
def base_cfg() -> ExperimentConfig:
    return load_config(None, ["data.train=x.csv"])


def _with(cfg: ExperimentConfig, key: str, value) -> ExperimentConfig:
    cfg = copy.deepcopy(cfg)
    *path, last = key.split(".")
    node = cfg
    for part in path:
        node = getattr(node, part)
    setattr(node, last, value)
    return cfg


def test_every_config_key_refuses_each_edge_in_one_line(base_cfg):
    """validate() is the boundary of every way a config arrives (file, override, Python): values set directly."""
    for key in RANGES:
        for value in (0, -1, 10**21, 1e30, math.nan, math.inf, -math.inf):
            cfg = _with(base_cfg, key, value)
            try:
                check_key(cfg, key)
            except ConfigError:
                with pytest.raises(ConfigError) as e:
                    validate(cfg)
                assert key in str(e.value) and "\n" not in str(e.value), (key, value, str(e.value))
            else:
                assert value in (0, -1), (key, value)  # huge, NaN and infinite never pass


def test_a_string_or_wrong_type_is_refused_naming_the_key(base_cfg):
    schema = OmegaConf.structured(ExperimentConfig)
    for key in RANGES:  # OmegaConf's type check, for every key
        with pytest.raises(OmegaConfBaseException):
            OmegaConf.update(schema, key, "abc")
    for key in ("model.text.depth", "optim.lr", "train.steps"):  # and the message load_config gives
        with pytest.raises(ConfigError) as e:
            load_config(None, [f"{key}=abc"])
        assert key in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("override", ["model.text.depth=0", "model.text.mlp_ratio=0", "model.text.vocab_size=0",
                                      "model.text.width=250"])
def test_scratch_tower_sizes_that_used_to_fail_late(override):
    cfg = load_config(None, ["data.train=x.csv", "model.text.name=scratch", override])
    with pytest.raises(ConfigError, match=override.split("=")[0].replace(".", r"\.")):
        validate(cfg)
