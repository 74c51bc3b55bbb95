"""Missing test requirements: a skip on a developer's machine, a failure under ``CI=true``.

CI must run the whole suite; a missing ``../shared/data`` or browser there is a broken setup, not a
reason to pass with tests left out."""
from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(reason: str):
    """Skip the test for ``reason``; under CI=true, fail it."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: every test must run)", pytrace=False)
    pytest.skip(reason)


def need_module(name: str, reason: str):
    """``pytest.importorskip`` that fails under CI=true."""
    try:
        return __import__(name)
    except ImportError:
        missing(reason)
