"""Typed study configs: one base experiment, a grid of named settings, one evaluation suite.

    name: flickr8k_lock
    out_dir: runs/study/flickr8k_lock
    base: littune/resources/configs/demo.yaml      # the experiment every setting starts from
    common: [train.steps=100, train.batch_size=128] # overrides shared by every setting
    settings:                                       # name -> overrides (the grid, in order)
      LU: []
      Uu: [model.image.lock=U, model.text.name=scratch, model.text.lock=u]
    evals:                                          # the evaluation suite (littune/evaluate/evaluators.py)
      test: {kind: retrieval, data: flickr8k:../shared/data/flickr8k:test}
      flowers: {kind: zeroshot, images: ../shared/data/flowers/test,
                classnames: configs/study/flowers_classnames.csv, templates: flowers}

Every setting sees the same data, steps and batch size unless its own overrides say otherwise,
so the grid compares settings at equal compute in steps (the report also gives wall time).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..config import ConfigError, ExperimentConfig, load_config, load_structured


@dataclass
class StudyConfig:
    name: str = "study"
    out_dir: str = "runs/study"
    base: Optional[str] = None  # an experiment YAML (configs/..., _base_ allowed); None: the defaults
    common: list[str] = field(default_factory=list)  # dotted overrides every setting gets first
    settings: dict[str, list[str]] = field(default_factory=dict)  # setting name -> its own overrides
    evals: dict[str, Any] = field(default_factory=dict)  # name -> {kind, ...options}, as in an experiment
    cache_root: Optional[str] = None  # embedding caches (default $LITTUNE_CACHE_DIR or ~/.cache/littune)

    def experiment(self, setting: str) -> ExperimentConfig:
        """The full experiment config of one setting, its run directory under ``out_dir``."""
        if setting not in self.settings:
            raise ConfigError(f"study '{self.name}' has no setting '{setting}' "
                              f"(settings: {', '.join(self.settings)})")
        overrides = [*self.common, *self.settings[setting], f"train.out_dir={self.run_dir(setting)}",
                     f"name={self.name}-{setting}"]
        if self.cache_root:
            overrides.append(f"data.cache_root={self.cache_root}")
        try:
            return load_config(self.base, overrides)
        except ConfigError as e:
            raise ConfigError(f"study setting '{setting}': {e}") from None

    def run_dir(self, setting: str) -> Path:
        return Path(self.out_dir) / setting

    def overrides_of(self, setting: str) -> list[str]:
        return [*self.common, *self.settings[setting]]


def load_study_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> StudyConfig:
    """Read a study YAML; unknown keys and wrong types fail with the key named."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"study config not found: {path}")
    study: StudyConfig = load_structured(StudyConfig, path, overrides, example="out_dir=runs/my_study")
    if not study.settings:
        raise ConfigError(f"{path}: 'settings' is empty: name at least one setting (e.g. LU: [])")
    if not study.evals:
        raise ConfigError(f"{path}: 'evals' is empty: name at least one evaluation "
                          "(e.g. test: {kind: retrieval, data: flickr8k:DIR:test})")
    from ..evaluate.suite import EvalSuite

    EvalSuite.from_evals(study.evals)  # unknown kinds and options fail here, before any training
    for name in study.settings:  # fail on a bad override before hours of training, not after
        study.experiment(name)
    return study
