"""One evaluation suite for training, ``littune eval``, the demo and studies.

    suite = EvalSuite.from_evals({"flowers_zs": {"kind": "zeroshot", "images": "flowers/train", "every": 500}})
    suite.due(step)                  # names whose ``every`` divides the step
    results = suite.run(model)       # {name: metrics}; suite.scalars(results) -> {"flowers_zs/top1": ...}

An experiment's ``evals`` plus, when ``data.dev`` is set, a retrieval evaluation named ``dev`` (every
``train.eval_every`` steps) make its suite. ``eval_zeroshot`` / ``eval_retrieval`` / ``eval_probe``
run one evaluator by its options, for scripts and notebooks.
"""
from __future__ import annotations

import contextlib
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..config import ConfigError, ExperimentConfig
from ..model import LiTModel
from ..towers import ImageTower
from .evaluators import Evaluator, RetrievalConfig, create_evaluator, retrieval_spec, split_or_default

DEV = "dev"  # the name of the evaluation ``data.dev`` adds


@dataclass
class NamedEval:
    name: str
    evaluator: Evaluator
    every: int = 0  # steps between runs during training (0: at the end only)


class EvalSuite:
    def __init__(self, evals: list[NamedEval]):
        self.evals = {e.name: e for e in evals}

    @classmethod
    def from_evals(cls, evals: Mapping[str, Mapping[str, Any]], cache_root: str | Path | None = None,
                   progress: bool = True) -> "EvalSuite":
        out = []
        seen: dict[str, str] = {}
        for name, spec in evals.items():
            where = f"evals.{name}"
            spec = dict(spec)
            if "kind" not in spec:
                raise ConfigError(f"{where}: needs 'kind' (zeroshot, retrieval or probe)")
            kind, every = spec.pop("kind"), spec.pop("every", 0)
            if not isinstance(every, int) or every < 0:
                raise ConfigError(f"{where}.every must be a whole number of steps >= 0, got {every!r}")
            # The same evaluation twice would be two rows of one figure in a results table.
            key = f"{kind}|" + "|".join(f"{k}={_identity(v)}" for k, v in sorted(spec.items()) if v is not None)
            if key in seen:
                raise ConfigError(f"{where}: runs the same evaluation as evals.{seen[key]} ({kind} on the same data "
                                  "with the same options); remove one, or change what it measures")
            seen[key] = name
            out.append(NamedEval(name, create_evaluator(kind, spec, where=where, cache_root=cache_root,
                                                        progress=progress), every))
        return cls(out)

    @classmethod
    def from_config(cls, cfg: ExperimentConfig, progress: bool = True) -> "EvalSuite":
        """The experiment's ``evals``, plus ``dev`` retrieval when ``data.dev`` is set."""
        suite = cls.from_evals(cfg.evals, cfg.data.cache_root, progress)
        if cfg.data.dev:
            if DEV in suite.evals:
                raise ConfigError(f"evals.{DEV}: the name is taken by data.dev's evaluation; rename it")
            dev = create_evaluator("retrieval", RetrievalConfig(data=cfg.data.dev, cache=cfg.data.dev_cache),
                                   cache_root=cfg.data.cache_root, progress=progress)
            suite.evals[DEV] = NamedEval(DEV, dev, cfg.train.eval_every)
        return suite

    def __len__(self) -> int:
        return len(self.evals)

    def due(self, step: int) -> list[str]:
        return [n for n, e in self.evals.items() if e.every and step % e.every == 0]

    def run(self, model: LiTModel, names: list[str] | None = None) -> dict[str, dict[str, Any]]:
        out = {}
        with isolated_rng():  # a training run's weights never depend on what its evaluations did or cached
            for name in names if names is not None else list(self.evals):
                t0 = time.perf_counter()
                out[name] = {**self.evals[name].evaluator.run(model), "eval_s": round(time.perf_counter() - t0, 2)}
        return out

    def scalars(self, results: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
        """``{name/metric: value}`` for the metrics each evaluator reports as scalars."""
        return {f"{name}/{k}": m[k] for name, m in results.items()
                for k in self.evals[name].evaluator.scalars if k in m}


def _identity(value: Any) -> str:
    """An option's value as it identifies data: an existing path made absolute (``./flowers/test``)."""
    text = str(value)
    return str(Path(text).resolve()) if Path(text).exists() else text


@contextlib.contextmanager
def isolated_rng():
    """Run a block without moving the caller's random streams (torch CPU and GPU, numpy, Python).

    Evaluations draw random numbers (a DataLoader's base seed when a cache must be embedded, seeded
    decoding): inside training, those draws would shift the dropout masks of every later step, so
    the same command and seed would train another model depending on whether a cache existed."""
    py, npy = random.getstate(), np.random.get_state()
    gpus = list(range(torch.cuda.device_count())) if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=gpus):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


def _run(kind: str, model, options: dict, cache_root, progress) -> dict:
    return create_evaluator(kind, options, where=kind, cache_root=cache_root, progress=progress).run(model)


def eval_zeroshot(model: LiTModel, images: str | Path, classnames_file: str | None = None,
                  templates: str = "simple", cache_root: str | Path | None = None, progress: bool = True) -> dict:
    return _run("zeroshot", model, {"images": str(images), "classnames": classnames_file, "templates": templates},
                cache_root, progress)


def eval_retrieval(model: LiTModel, data: str, split: str | None = None, cache_root: str | Path | None = None,
                   progress: bool = True, chunk_size: int = 1024) -> dict:
    """Image-to-text and text-to-image R@1/5/10, every caption of an image a positive.

    ``split``: for Flickr8k-style data, the split ``data`` names, else test; another split than the
    one ``data`` names is refused."""
    split = split_or_default(str(data), split)
    return _run("retrieval", model, {"data": str(data), "split": split, "chunk_size": chunk_size}, cache_root,
                progress)


def eval_probe(model_or_tower: LiTModel | ImageTower, train: str | Path, test: str | Path,
               cache_root: str | Path | None = None, progress: bool = True, protocol: str = "clip_benchmark") -> dict:
    """Logistic regression on the image tower's own features: what the tower knows. ``protocol``:
    clip_benchmark (C by log sweep then binary search) or quick (5 values of C); see evaluate/probe.py."""
    return _run("probe", model_or_tower, {"train": str(train), "test": str(test), "protocol": protocol},
                cache_root, progress)


__all__ = ["EvalSuite", "NamedEval", "DEV", "eval_zeroshot", "eval_retrieval", "eval_probe", "retrieval_spec"]
