"""The package's layers hold: import-linter checks the contracts in pyproject.toml ([tool.importlinter]).

Layers from bottom to top (registry, distributed -> towers, data, losses -> model, cache, config ->
runs -> encode, evaluate -> train -> infer, study, demo -> serve -> commands, cli), the towers'
and the model's forbidden imports, nothing importing the CLI, and no cycle between the modules of
any package. Lazy imports inside functions count.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    r = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout
