"""A fresh clone imports: every package file is in git, and a script beside a clone named ``littune``
finds the package, not the clone folder.

Both failures showed the same message, "cannot import name 'load_run' from 'littune.runs' (unknown
location)": Python's answer when ``littune.runs`` is a namespace package, i.e. a folder without
``__init__.py``. Once because ``.gitignore``'s ``runs/`` kept ``littune/runs/__init__.py`` out of git;
once because setuptools' default editable install (an import hook that runs after the path search)
loses to a folder named ``littune`` next to the script, so the Makefile installs with
``editable_mode=compat`` (a path entry, where a real package beats a namespace folder).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_no_package_file_is_ignored_by_git():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    r = subprocess.run(["git", "ls-files", "--others", "--ignored", "--exclude-standard", "littune"], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    ignored = [f for f in r.stdout.splitlines() if "__pycache__" not in f and f.endswith((".py", ".txt", ".yaml",
                                                                                         ".js", ".html", ".css"))]
    assert r.returncode == 0 and ignored == [], f"package files git would leave out of a clone: {ignored}"


def test_every_package_folder_is_a_regular_package():
    folders = {p.parent for p in (REPO / "littune").rglob("*.py")}
    missing = sorted(str(f.relative_to(REPO)) for f in folders if not (f / "__init__.py").is_file())
    assert missing == [], f"folders of modules without __init__.py (namespace packages): {missing}"


def test_a_script_beside_a_clone_named_littune_imports_the_package(tmp_path):
    # The folder above a clone: the clone (named littune, with the runs/ a demo leaves) and a script.
    (tmp_path / "littune" / "runs" / "demo").mkdir(parents=True)
    (tmp_path / "script.py").write_text("import littune\nfrom littune.runs import load_run\n"
                                        "print(littune.__file__, load_run.__module__)\n")
    # The installed package as a path entry, as `make install` (editable_mode=compat) or a wheel puts it.
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(REPO / "littune" / "__init__.py"), "littune.runs.load"]


def test_the_makefile_installs_as_a_path_entry():
    assert "editable_mode=compat" in (REPO / "Makefile").read_text()
