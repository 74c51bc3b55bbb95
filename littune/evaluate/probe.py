"""Linear probe: logistic regression on frozen features.

The standard representation-quality check (CLIP arXiv 2103.00020 Sec. 3.2 and
App. A.3; LiT arXiv 2111.07991 reports it for the locked image tower): fit an
L2-regularised multinomial logistic regression (L-BFGS) on frozen training
features, choose the inverse regularisation strength C on a held-out validation
split of the TRAINING data, refit on all training data with that C, and report
accuracy on the test features.

Features are L2-normalised per row, then standardised with the mean/std of the
training rows (well-conditioned inputs make L-BFGS converge in few iterations;
the scaler is fitted on training data only, so nothing leaks from test).
Everything is deterministic for a given ``seed``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

__all__ = ["linear_probe"]


def _to_numpy(x, name: str, ndim: int) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor without importing torch here
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape}")
    return x


def _prepare(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64, copy=False)
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _standardise(fit: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale with statistics of ``fit`` only; float32 halves L-BFGS time vs float64."""
    mean, std = fit.mean(0), fit.std(0) + 1e-8
    return ((fit - mean) / std).astype(np.float32), ((other - mean) / std).astype(np.float32)


def _fit(clf: LogisticRegression, x: np.ndarray, y: np.ndarray) -> LogisticRegression:
    with warnings.catch_warnings():
        # Hitting max_iter only matters for the largest Cs; accuracy is what we report.
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    return clf


def _split(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/val indices; stratified when every class has >= 2 examples."""
    _, counts = np.unique(y, return_counts=True)
    n_val = max(1, int(round(val_fraction * len(y))))
    if counts.min() >= 2 and len(counts) <= n_val <= len(y) - len(counts):
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=n_val, random_state=seed)
    else:
        splitter = ShuffleSplit(n_splits=1, test_size=n_val, random_state=seed)
    return next(splitter.split(np.zeros(len(y)), y))


def linear_probe(
    train_x,
    train_y,
    test_x,
    test_y,
    Cs: Sequence[float] = (0.01, 0.1, 1.0, 10.0, 100.0),
    val_fraction: float = 0.2,
    seed: int = 0,
    max_iter: int = 1000,
) -> dict:
    """Fit a logistic-regression probe on (N, D) train features, report test accuracy.

    Args:
        train_x, test_x: (N, D) / (N_test, D) features, numpy or torch.
        train_y, test_y: (N,) / (N_test,) integer (or any hashable) labels.
        Cs: candidate inverse regularisation strengths (larger = weaker L2).
        val_fraction: share of the training rows held out to choose C.
        seed: seed of the validation split (the fit itself is deterministic).
        max_iter: L-BFGS iteration cap per fit.

    Returns:
        ``top1`` (test accuracy), ``best_C``, ``val_acc`` {"C": accuracy} per C,
        ``train_acc`` (refit model on all training rows), ``n_train``, ``n_test``,
        ``n_classes``.
    """
    tx, vx = _to_numpy(train_x, "train_x", 2), _to_numpy(test_x, "test_x", 2)
    ty, vy = _to_numpy(train_y, "train_y", 1), _to_numpy(test_y, "test_y", 1)
    if len(tx) != len(ty) or len(vx) != len(vy):
        raise ValueError(
            f"feature/label counts differ: train {len(tx)} vs {len(ty)}, test {len(vx)} vs {len(vy)}"
        )
    if tx.shape[1] != vx.shape[1]:
        raise ValueError(f"train and test feature dims differ: {tx.shape[1]} vs {vx.shape[1]}")
    if len(vx) == 0:
        raise ValueError("test set is empty")
    if len(np.unique(ty)) < 2:
        raise ValueError("train_y needs at least two classes for a classifier")
    Cs = sorted(float(c) for c in Cs)
    if not Cs or Cs[0] <= 0:
        raise ValueError(f"Cs must be non-empty and positive, got {Cs}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")

    tx, vx = _prepare(tx), _prepare(vx)

    val_acc: dict[str, float] = {}
    if len(Cs) == 1:
        best_C = Cs[0]
    else:
        fit_idx, val_idx = _split(ty, val_fraction, seed)
        xf, xv = _standardise(tx[fit_idx], tx[val_idx])
        # Cold fit per C. (Warm-starting from the previous C looks cheaper, but L-BFGS then
        # often stops after 0-1 iterations at large C, so every C scores the same.)
        for C in Cs:
            clf = _fit(LogisticRegression(C=C, max_iter=max_iter), xf, ty[fit_idx])
            val_acc[f"{C:g}"] = float((clf.predict(xv) == ty[val_idx]).mean())
        # Ties go to the smallest C (strongest regularisation): the first maximum.
        best_C = max(Cs, key=lambda c: (val_acc[f"{c:g}"], -c))

    xt, xs = _standardise(tx, vx)
    clf = _fit(LogisticRegression(C=best_C, max_iter=max_iter), xt, ty)
    return {
        "top1": float((clf.predict(xs) == vy).mean()),
        "best_C": best_C,
        "val_acc": val_acc,
        "train_acc": float((clf.predict(xt) == ty).mean()),
        "n_train": int(len(tx)),
        "n_test": int(len(vx)),
        "n_classes": int(len(np.unique(ty))),
    }
