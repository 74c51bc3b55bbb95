"""The linear probe's preprocessing and choice of C, pinned against a reference written here.

What the docstring of ``littune.evaluate.probe`` promises and no other test holds: rows are
L2-normalised (so the probe does not care how long a feature vector is, and NaN/inf is refused
with a clear error), the standardisation statistics come from the training rows only (nothing
leaks from the test rows), and ties in validation accuracy go to the smallest C.
"""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from littune.evaluate.probe import linear_probe


def _reference(train_x, train_y, test_x, test_y, C: float, stats_from: str) -> dict:
    """The documented pipeline, written out: L2 rows, standardise with ``stats_from`` rows, fit, score."""
    def unit(x):
        x = np.asarray(x, np.float64)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    tx, vx = unit(train_x), unit(test_x)
    rows = tx if stats_from == "train" else np.concatenate([tx, vx])
    mean, std = rows.mean(0), rows.std(0) + 1e-8
    xt, xs = ((tx - mean) / std).astype(np.float32), ((vx - mean) / std).astype(np.float32)
    clf = LogisticRegression(C=C, max_iter=1000).fit(xt, train_y)
    return {"top1": float((clf.predict(xs) == test_y).mean()), "train_acc": float((clf.predict(xt) == train_y).mean())}


def _leaky_data(seed: int = 0):
    """Training rows whose label is the sign of a small coordinate (dim 0); many test rows with a
    large dim 0. Statistics over all rows make dim 0's spread ~10x wider than over the training
    rows, so under L2 regularisation the probe can no longer lean on it: the scores change."""
    rng = np.random.default_rng(seed)
    n, d = 60, 6
    y = np.arange(n) % 2
    x = rng.normal(0, 1, (n, d))
    x[:, 0] = np.where(y == 1, 1, -1) * rng.uniform(0.02, 0.06, n)
    m = 200
    ty = np.arange(m) % 2
    tx = rng.normal(0, 1, (m, d))
    tx[:, 0] = np.where(ty == 1, 1, -1) * rng.uniform(1.0, 3.0, m) + 2.0  # shifted and wide
    return x, y, tx, ty


def test_standardisation_statistics_come_from_the_training_rows_only():
    x, y, tx, ty = _leaky_data()
    C = 0.05
    out = linear_probe(x, y, tx, ty, Cs=[C])
    honest = _reference(x, y, tx, ty, C, "train")
    leaky = _reference(x, y, tx, ty, C, "all")
    assert honest != leaky, "test data must tell the two apart"
    assert {k: out[k] for k in honest} == honest
    # The same holds through the validation split: the C chosen and its scores use fit-rows' statistics.
    out2 = linear_probe(x, y, tx, ty, Cs=[0.05, 1.0])
    assert set(out2["val_acc"]) == {"0.05", "1"}
    assert {k: out2[k] for k in honest} == _reference(x, y, tx, ty, out2["best_C"], "train")


def test_predictions_on_a_test_row_do_not_depend_on_the_other_test_rows():
    x, y, tx, ty = _leaky_data(1)
    alone = [linear_probe(x, y, tx[i:i + 1], ty[i:i + 1], Cs=[0.05])["top1"] for i in range(0, 40)]
    together = linear_probe(x, y, tx[:40], ty[:40], Cs=[0.05])["top1"]
    assert together == pytest.approx(np.mean(alone))


def test_scaling_any_row_by_a_positive_factor_changes_nothing():
    rng = np.random.default_rng(3)
    n, d = 80, 8
    y = rng.integers(0, 3, n)
    centres = rng.normal(0, 1, (3, d))
    x = centres[y] + rng.normal(0, 0.9, (n, d))
    ty = rng.integers(0, 3, 40)
    tx = centres[ty] + rng.normal(0, 0.9, (40, d))
    base = linear_probe(x, y, tx, ty, Cs=(0.1, 1.0, 10.0))
    scale = np.exp(rng.uniform(-7, 7, (n, 1)))  # 1e-3 .. 1e3 per row
    tscale = np.exp(rng.uniform(-7, 7, (40, 1)))
    scaled = linear_probe(x * scale, y, tx * tscale, ty, Cs=(0.1, 1.0, 10.0))
    assert scaled == base
    # and the scores equal the reference that normalises rows (a probe without it scores differently)
    assert {k: base[k] for k in ("top1", "train_acc")} == _reference(x, y, tx, ty, base["best_C"], "train")


@pytest.mark.parametrize("where", ["train", "test"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_features_is_refused_by_name(where, bad):
    rng = np.random.default_rng(0)
    x, tx = rng.normal(size=(20, 4)), rng.normal(size=(6, 4))
    y, ty = np.arange(20) % 2, np.arange(6) % 2
    (x if where == "train" else tx)[3, 2] = bad
    with pytest.raises(ValueError, match="^features contain NaN or inf$"):
        linear_probe(x, y, tx, ty)


def _separable(n: int = 60, seed: int = 0):
    """Two well-separated classes, 2:1 unbalanced (a near-zero-weight probe predicts the larger one)."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 3 == 0).astype(int)
    x = rng.normal(0, 0.3, (n, 5))
    x[:, 0] += np.where(y == 1, 3.0, -3.0)
    x[:, 1] += 1.0  # keep rows off the origin so normalisation keeps the sign of dim 0
    return x, y


def test_ties_in_validation_accuracy_go_to_the_smallest_C():
    x, y = _separable()
    out = linear_probe(x, y, x[:10], y[:10], Cs=(100.0, 1.0, 10.0, 0.1))  # given unsorted
    assert set(out["val_acc"].values()) == {1.0}, out["val_acc"]  # every C ties
    assert out["best_C"] == 0.1


def test_the_smallest_of_the_best_Cs_not_the_smallest_C():
    x, y = _separable(seed=1)
    # A C this small leaves the weights at ~0: the intercept predicts the larger class for every row.
    out = linear_probe(x, y, x[:10], y[:10], Cs=(1e-7, 0.5, 5.0, 50.0))
    assert out["val_acc"]["1e-07"] < 1.0 and out["val_acc"]["0.5"] == out["val_acc"]["5"] == 1.0, out["val_acc"]
    assert out["best_C"] == 0.5


def test_a_strictly_better_larger_C_wins():
    x, y = _separable(seed=2)
    out = linear_probe(x, y, x[:8], y[:8], Cs=(1e-7, 10.0))
    assert out["val_acc"]["10"] > out["val_acc"]["1e-07"], out["val_acc"]
    assert out["best_C"] == 10.0


def test_choosing_C_standardises_with_the_fit_rows_not_the_held_out_ones():
    """The validation rows that score each C are held out from the statistics too."""
    from littune.evaluate.probe import _split

    x, y, tx, ty = _leaky_data(2)
    x, y = np.concatenate([x, tx[:60]]), np.concatenate([y, ty[:60]])  # training rows of both kinds
    Cs, frac = (0.02, 0.2), 0.7
    out = linear_probe(x, y, tx[60:], ty[60:], Cs=Cs, val_fraction=frac, seed=4)
    fit, val = _split(y, frac, 4)

    honest = {f"{C:g}": _reference(x[fit], y[fit], x[val], y[val], C, "train")["top1"] for C in Cs}
    leaky = {f"{C:g}": _val_with_stats(x, y, fit, val, C) for C in Cs}
    assert honest != leaky, "test data must tell the two apart"
    assert out["val_acc"] == honest


def _val_with_stats(x, y, fit, val, C):
    """Validation accuracy with statistics over all training rows (fit and held-out): the leak."""
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    mean, std = u.mean(0), u.std(0) + 1e-8
    z = ((u - mean) / std).astype(np.float32)
    clf = LogisticRegression(C=C, max_iter=1000).fit(z[fit], y[fit])
    return float((clf.predict(z[val]) == y[val]).mean())


def test_bad_arguments_are_refused_with_the_exact_reason():
    x, y = _separable(12)
    cases = [
        ((x[:, 0], y, x, y), {}, "train_x must be 2-D, got shape (12,)"),
        ((x, y, x[None], y), {}, "test_x must be 2-D, got shape (1, 12, 5)"),
        ((x, y[:, None], x, y), {}, "train_y must be 1-D, got shape (12, 1)"),
        ((x, y[:-1], x, y), {}, "feature/label counts differ: train 12 vs 11, test 12 vs 12"),
        ((x, y, x, y[:-2]), {}, "feature/label counts differ: train 12 vs 12, test 12 vs 10"),
        ((x, y, x[:, :3], y), {}, "train and test feature dims differ: 5 vs 3"),
        ((x, y, x[:0], y[:0]), {}, "test set is empty"),
        ((x, np.zeros(12), x, y), {}, "train_y needs at least two classes for a classifier"),
        ((x, y, x, y), {"Cs": ()}, "Cs must be non-empty and positive, got []"),
        ((x, y, x, y), {"Cs": (1.0, -0.5)}, "Cs must be non-empty and positive, got [-0.5, 1.0]"),
        ((x, y, x, y), {"val_fraction": 0.0}, "val_fraction must be in (0, 1), got 0.0"),
        ((x, y, x, y), {"val_fraction": 1.0}, "val_fraction must be in (0, 1), got 1.0"),
    ]
    for args, kw, message in cases:
        with pytest.raises(ValueError) as e:
            linear_probe(*args, **kw)
        assert str(e.value) == message
    out = linear_probe(x, y, x[:5], y[:5], val_fraction=0.5)  # inside the range is fine
    assert (out["n_train"], out["n_test"], out["n_classes"]) == (12, 5, 2)


def test_the_validation_split_is_stratified_whenever_it_can_be():
    from littune.evaluate.probe import _split

    y = np.repeat([0, 1, 2], 10)  # 30 rows, 10 per class
    for frac, n_val in ((0.3, 9), (0.1, 3), (0.9, 27)):  # 3 and 27 are the bounds stratifying allows
        for seed in range(4):
            fit, val = _split(y, frac, seed)
            assert len(val) == n_val and len(fit) == 30 - n_val and set(fit) | set(val) == set(range(30))
            assert np.bincount(y[val], minlength=3).tolist() == [n_val // 3] * 3, (frac, seed)
    for frac, n_val in ((0.07, 2), (0.93, 28), (0.001, 1)):  # beyond them: a plain random split
        fit, val = _split(y, frac, 0)
        assert len(val) == n_val and len(set(fit) | set(val)) == 30
    y1 = np.array([0] * 9 + [1])  # a class with one row cannot be stratified
    fit, val = _split(y1, 0.2, 0)
    assert len(val) == 2 and len(fit) == 8
    y2 = np.repeat([0, 1], 2)  # every class has two rows: stratified, one of each held out
    for seed in range(5):
        assert sorted(y2[_split(y2, 0.5, seed)[1]].tolist()) == [0, 1]
    assert [_split(y, 0.3, s)[1].tolist() for s in (0, 1)][0] != _split(y, 0.3, 1)[1].tolist()  # seeded


def test_defaults_tensors_with_grad_and_the_unstratified_split_is_seeded():
    import torch

    from littune.evaluate.probe import _split

    x, y = _separable(30, seed=3)
    t = torch.from_numpy(x).requires_grad_(True)  # features straight from a model
    assert linear_probe(t, y, t[:6], y[:6], Cs=[1.0]) == linear_probe(x, y, x[:6], y[:6], Cs=[1.0])
    assert linear_probe(x, y, x[:6], y[:6]) == linear_probe(x, y, x[:6], y[:6], seed=0)  # the default seed is 0
    with pytest.raises(ValueError) as e:
        linear_probe(x, y, x, y[:, None])
    assert str(e.value) == "test_y must be 1-D, got shape (30, 1)"
    y1 = np.array([0] * 19 + [1])  # one class with one row: the plain split, seeded all the same
    assert _split(y1, 0.3, 2)[1].tolist() == _split(y1, 0.3, 2)[1].tolist()
    assert len({tuple(_split(y1, 0.3, s)[1].tolist()) for s in range(4)}) > 1
