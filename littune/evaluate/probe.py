"""Linear probe: logistic regression on frozen features.

The standard representation-quality check (CLIP arXiv 2103.00020 Sec. 3.2 and
App. A.3; LiT arXiv 2111.07991 reports it for the locked image tower): fit an
L2-regularised multinomial logistic regression (L-BFGS) on frozen training
features, choose the inverse regularisation strength C on a held-out validation
split of the TRAINING data, refit on all training data with that C, and report
accuracy on the test features.

Protocols (``protocol``):

    clip_benchmark  (default) CLIP_benchmark 1.6.2's search (``metrics/linear_probe.py``): a grid of 97
                    log-spaced values, 7 of them tried first (every 16th), then a binary search around
                    the best: the best and its neighbours at 8, 4, 2, 1 grid steps, keeping the first
                    best in the order tried. Its grid is weight decay in [1e-6, 1e2] for an AdamW linear
                    layer on a GPU; ours is C in [1e-6, 1e6] (CLIP App. A.3's range of the L2 strength)
                    for L-BFGS logistic regression, as CLIP fits it.
    quick           littune's earlier sweep: C in (0.01, 0.1, 1, 10, 100) on the same validation split.

Passing ``Cs`` tries exactly those values.

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

__all__ = ["linear_probe", "PROTOCOLS", "C_GRID"]

PROTOCOLS = ("clip_benchmark", "quick")
QUICK_CS = (0.01, 0.1, 1.0, 10.0, 100.0)
C_GRID = tuple(np.logspace(-6, 6, 97).tolist())  # 8 steps per decade; every 16th is a decade pair
_FIRST = tuple(range(0, 97, 16))  # the 7 values tried first: 1e-6, 1e-4, ..., 1e6


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


def _binary_search(score) -> int:
    """CLIP_benchmark's ``find_peak`` schedule over grid indices 0..96: the 7 first values, then the
    best and its neighbours at 8, 4, 2, 1 steps; the first best in the order tried wins (strictly
    greater replaces), starting from index 0 at accuracy 0 as it does."""

    def peak(idxs) -> int:
        best_i, best_acc = 0, 0.0
        for i in idxs:
            acc = score(i)
            if acc > best_acc:
                best_i, best_acc = i, acc
        return best_i

    best = peak(_FIRST)
    step = 8
    while step > 0:
        best = peak([max(best - step, 0), best, min(best + step, len(C_GRID) - 1)])
        step //= 2
    return best


def linear_probe(
    train_x,
    train_y,
    test_x,
    test_y,
    Cs: Sequence[float] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    max_iter: int = 1000,
    protocol: str = "clip_benchmark",
    classnames: Sequence[str] | None = None,
) -> dict:
    """Fit a logistic-regression probe on (N, D) train features, report test accuracy.

    Args:
        train_x, test_x: (N, D) / (N_test, D) features, numpy or torch.
        train_y, test_y: (N,) / (N_test,) integer (or any hashable) labels.
        Cs: candidate inverse regularisation strengths (larger = weaker L2); None: the protocol's.
        protocol: ``clip_benchmark`` (log sweep, then binary search) or ``quick`` (module docstring).
        classnames: names of the label values 0..K-1, for errors (default: the label values).
        val_fraction: share of the training rows held out to choose C.
        seed: seed of the validation split (the fit itself is deterministic).
        max_iter: L-BFGS iteration cap per fit.

    Returns:
        ``top1`` (test accuracy), ``protocol``, ``best_C``, ``val_acc`` {"C": accuracy} per C tried,
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
    given = Cs is not None
    values, counts = np.unique(ty, return_counts=True)
    if len(values) < 2:
        raise ValueError("train_y needs at least two classes for a classifier")
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown probe protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if Cs is not None and len(Cs) == 1:
        pass  # one C: nothing to choose, no validation split
    elif counts.min() < 2:
        lonely = [classnames[int(v)] if classnames is not None else str(v) for v in values[counts < 2]]
        raise ValueError(f"linear probe: class(es) {', '.join(lonely)} have one training image; choosing C "
                         "needs a validation split of every class (give each class at least 2 images)")
    if Cs is not None:
        Cs = sorted(float(c) for c in Cs)
        if not Cs or Cs[0] <= 0:
            raise ValueError(f"Cs must be non-empty and positive, got {Cs}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")

    tx, vx = _prepare(tx), _prepare(vx)

    val_acc: dict[str, float] = {}
    if Cs is not None and len(Cs) == 1:
        best_C = Cs[0]
    else:
        fit_idx, val_idx = _split(ty, val_fraction, seed)
        xf, xv = _standardise(tx[fit_idx], tx[val_idx])

        def score(C: float) -> float:
            # Cold fit per C. (Warm-starting from the previous C looks cheaper, but L-BFGS then
            # often stops after 0-1 iterations at large C, so every C scores the same.)
            if f"{C:g}" not in val_acc:
                clf = _fit(LogisticRegression(C=C, max_iter=max_iter), xf, ty[fit_idx])
                val_acc[f"{C:g}"] = float((clf.predict(xv) == ty[val_idx]).mean())
            return val_acc[f"{C:g}"]

        if Cs is None and protocol == "clip_benchmark":
            best_C = C_GRID[_binary_search(lambda i: score(C_GRID[i]))]
        else:
            Cs = Cs if Cs is not None else list(QUICK_CS)
            for C in Cs:
                score(C)
            # Ties go to the smallest C (strongest regularisation): the first maximum.
            best_C = max(Cs, key=lambda c: (val_acc[f"{c:g}"], -c))

    xt, xs = _standardise(tx, vx)
    clf = _fit(LogisticRegression(C=best_C, max_iter=max_iter), xt, ty)
    return {
        "top1": float((clf.predict(xs) == vy).mean()),
        "protocol": protocol if not given else "given Cs",
        "best_C": best_C,
        "val_acc": val_acc,
        "train_acc": float((clf.predict(xt) == ty).mean()),
        "n_train": int(len(tx)),
        "n_test": int(len(vx)),
        "n_classes": int(len(np.unique(ty))),
    }
