"""The docs' MkDocs hooks (docs/hooks/*.py) and benchmarks/common.py, imported as modules for the tests."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"


def load(path: Path, name: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def reference():
    return load(DOCS / "hooks" / "reference.py", "littune_docs_reference")


def results():
    return load(DOCS / "hooks" / "results.py", "littune_docs_results")


def common():
    return load(REPO / "benchmarks" / "common.py", "littune_bench_common")
