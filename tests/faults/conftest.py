"""Fixtures for the fault-injection suite: tiny data, its cache, one finished run to copy and damage.

Every test here injects one fault (a flipped bit, a changed setting, a full disk, a dead peer) into
something that worked, and checks the outcome: a clear error naming what is wrong (exit code 2 from
the CLI) or a correct result, never a silently different one, and nothing good thrown away.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.cache.conftest import other_tower_weights, tokenizer_file, tower_weights  # noqa: F401  (fixtures)
from tests.cache.tiny_data import make_cache, model_overrides

STEPS, EVERY = 6, 3


@pytest.fixture(scope="session")
def fault_data(tmp_path_factory, tower_weights) -> dict[str, Path]:  # noqa: F811
    root = tmp_path_factory.mktemp("fault_data")
    cache = make_cache(root, 32, tower_weights)
    other = make_cache(root / "other", 32, tower_weights, seed=5)  # other pixels, same captions: another cache
    return {"root": root, "csv": root / "data" / "data.csv", "cache": cache, "other_cache": other}


def run_overrides(run: Path, data: dict, weights: Path, tokenizer: Path, *extra: str) -> list[str]:
    """A tiny cached run: 6 steps, a checkpoint every 3, dropout on in the text tower."""
    return model_overrides(weights, tokenizer=tokenizer) + [
        f"data.train_cache={data['cache']}", f"train.out_dir={run}", f"train.steps={STEPS}", "train.batch_size=8",
        "train.log_every=1", f"train.ckpt_every={EVERY}", "train.progress=false", "train.threads=1",
        "optim.warmup_steps=2", "optim.lr=2e-3", "model.text.dropout=0.1",
        "model.image.head=linear", "model.embed_dim=16", *extra]


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, fault_data, tower_weights, tokenizer_file) -> Path:  # noqa: F811
    """A finished run with every weight group: text tower, text and image heads, temperature, bias."""
    from littune.train import Trainer, load_config

    run = tmp_path_factory.mktemp("finished") / "run"
    Trainer(load_config(None, run_overrides(run, fault_data, tower_weights, tokenizer_file))).fit()
    return run


@pytest.fixture
def run_copy(tmp_path, finished_run) -> Path:
    """A private copy of the finished run, to damage."""
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


@contextlib.contextmanager
def small_filesystem(path: Path, size_kb: int, readonly: bool = False):
    """A real tmpfs of ``size_kb`` at ``path`` (root with mount rights only; skips elsewhere, where
    the write-wrapper tests stand in for it)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a small file system needs root and mount(8); the write-wrapper tests cover this")
    opts = f"size={size_kb}k" + (",ro" if readonly else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); the write-wrapper tests cover this")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def enospc_after(real, fail_when) -> callable:
    """A writer like ``real(obj, path_or_file)`` that, when ``fail_when()`` is true, writes half the
    bytes and then fails as a full disk does (OSError ENOSPC)."""
    def write(obj, target, *args, **kwargs):
        if not fail_when():
            return real(obj, target, *args, **kwargs)
        with tempfile.TemporaryDirectory() as tmp:
            real(obj, str(Path(tmp) / "whole"), *args, **kwargs)
            data = (Path(tmp) / "whole").read_bytes()
        if hasattr(target, "write"):
            target.write(data[: len(data) // 2])
        else:
            Path(target).write_bytes(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(getattr(target, "name", target)))
    return write
