"""Under CI=true a missing ../shared/data or browser fails the tests that need it instead of skipping them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.cache.tiny_data import cli_env

REPO = Path(__file__).resolve().parents[2]


def _pytest(tmp_path: Path, ci: str, test: str) -> subprocess.CompletedProcess:
    env = {**cli_env(), "CI": ci, "LITTUNE_SHARED_DATA": str(tmp_path / "no_such_data")}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
                           "-rfs", test], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_missing_shared_data_fails_under_ci(tmp_path):
    test = "tests/data/test_flickr8k.py"
    local = _pytest(tmp_path, "", test)
    assert local.returncode == 0 and " skipped" in local.stdout and "failed" not in local.stdout, local.stdout[-2000:]
    ci = _pytest(tmp_path, "true", test)
    # failed in the test or in its fixture's setup ("error"): either way not skipped, and the run fails
    assert ci.returncode == 1 and (" failed" in ci.stdout or " error" in ci.stdout), ci.stdout[-2000:]
    assert " skipped" not in ci.stdout
    assert "real data not found" in ci.stdout and "CI=true: every test must run" in ci.stdout


def test_missing_module_fails_under_ci(monkeypatch):
    import pytest

    from tests.ci import need_module

    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception):
        need_module("no_such_module_littune", "pip install it")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        need_module("no_such_module_littune", "pip install it")
    assert need_module("json", "stdlib").dumps([1]) == "[1]"
