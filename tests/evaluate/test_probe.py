"""Linear probe: separable data is learned, random labels stay at chance, runs are deterministic."""

import numpy as np
import pytest
import torch

from littune.evaluate.probe import linear_probe


def _blobs(n_per_class, n_classes, d, sep, seed):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, d)) * sep
    y = np.repeat(np.arange(n_classes), n_per_class)
    x = centers[y] + rng.normal(size=(len(y), d))
    return x.astype(np.float32), y


def test_separable_data_reaches_full_accuracy():
    x, y = _blobs(60, 3, 16, sep=4.0, seed=0)
    xt, yt = _blobs(20, 3, 16, sep=4.0, seed=0)  # same centers (same seed), fresh noise below
    xt = xt + np.random.default_rng(1).normal(size=xt.shape).astype(np.float32) * 0.1
    m = linear_probe(x, y, xt, yt, protocol="quick")
    assert m["top1"] >= 0.98 and m["protocol"] == "quick"
    assert m["n_train"] == 180 and m["n_test"] == 60 and m["n_classes"] == 3
    assert m["best_C"] in (0.01, 0.1, 1.0, 10.0, 100.0)
    assert set(m["val_acc"]) == {"0.01", "0.1", "1", "10", "100"}


def test_random_labels_stay_near_chance():
    rng = np.random.default_rng(2)
    x, xt = rng.normal(size=(400, 32)), rng.normal(size=(400, 32))
    y, yt = rng.integers(0, 4, 400), rng.integers(0, 4, 400)
    m = linear_probe(x, y, xt, yt, Cs=(0.1, 10.0))
    assert 0.15 < m["top1"] < 0.35  # chance = 0.25


def test_deterministic_and_accepts_torch():
    x, y = _blobs(30, 4, 24, sep=0.6, seed=3)
    xt, yt = _blobs(10, 4, 24, sep=0.6, seed=3)
    a = linear_probe(x, y, xt, yt, seed=5)
    b = linear_probe(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(xt), torch.from_numpy(yt), seed=5)
    assert a == b


def test_single_C_skips_validation_and_errors():
    x, y = _blobs(10, 2, 4, sep=3.0, seed=4)
    m = linear_probe(x, y, x, y, Cs=(1.0,))
    assert m["best_C"] == 1.0 and m["val_acc"] == {}
    with pytest.raises(ValueError, match="counts differ"):
        linear_probe(x, y[:-1], x, y)
    with pytest.raises(ValueError, match="dims differ"):
        linear_probe(x, y, x[:, :3], y)
    with pytest.raises(ValueError, match="two classes"):
        linear_probe(x, np.zeros(len(x)), x, y)
    with pytest.raises(ValueError, match="Cs"):
        linear_probe(x, y, x, y, Cs=(0.0, 1.0))


def test_default_protocol_is_clip_benchmarks_sweep_then_binary_search():
    """7 log-spaced values first, then the best and its neighbours at 8, 4, 2, 1 grid steps: the same
    indices CLIP_benchmark 1.6.2's ``find_peak`` loop visits for the same validation accuracies."""
    from littune.evaluate.probe import C_GRID, _binary_search

    x, y = _blobs(40, 3, 16, sep=0.7, seed=8)
    xt, yt = _blobs(15, 3, 16, sep=0.7, seed=8)
    m = linear_probe(x, y, xt, yt)
    assert m["protocol"] == "clip_benchmark" and m["best_C"] in C_GRID
    tried = [float(c) for c in m["val_acc"]]
    assert {f"{C_GRID[i]:g}" for i in range(0, 97, 16)} <= set(m["val_acc"])  # the wide sweep
    assert 7 < len(tried) <= 7 + 4 * 2  # then a narrowing search (each step adds at most two values)
    assert m["val_acc"][f"{m['best_C']:g}"] == max(m["val_acc"].values())
    # The schedule itself, on a known accuracy curve peaking at index 37: CLIP_benchmark's loop.
    visited = []

    def acc(i):
        visited.append(i)
        return 1.0 - abs(i - 37) / 100

    assert _binary_search(acc) == 37
    assert visited == [0, 16, 32, 48, 64, 80, 96,  # the wide sweep: best 32
                       24, 32, 40, 36, 40, 44, 34, 36, 38, 35, 36, 37]  # +-8 -> 40, +-4 -> 36, +-2 -> 36, +-1


def test_a_probe_class_with_one_image_is_named():
    x, y = _blobs(5, 3, 4, sep=3.0, seed=9)
    x, y = x[:11], y[:11]  # class 2 keeps one image
    with pytest.raises(ValueError, match="class\\(es\\) tulips have one training image"):
        linear_probe(x, y, x, y, classnames=["daisy", "roses", "tulips"])
