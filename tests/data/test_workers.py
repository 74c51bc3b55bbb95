"""Loader workers start from a fork server: they never inherit the caller's threads or the locks
those threads hold (forking a threaded caller crashed the test suite's own workers)."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from littune.data import workers
from littune.data.workers import loader_workers, worker_context

LOCK = threading.Lock()  # held by a thread of the caller while the workers start


class LockedReads(Dataset):
    """Item i is (i, whether this process could take LOCK within 2 s, the worker's parent pid)."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        got = LOCK.acquire(timeout=2)
        if got:
            LOCK.release()
        return torch.tensor([i, int(got), os.getppid()])


def test_workers_do_not_inherit_a_lock_a_caller_thread_holds():
    held, release = threading.Event(), threading.Event()

    def hold():
        with LOCK:
            held.set()
            release.wait(60)

    t = threading.Thread(target=hold, daemon=True)
    t.start()
    held.wait(10)
    try:
        rows = torch.cat(list(DataLoader(LockedReads(), batch_size=2, **loader_workers(2))))
    finally:
        release.set()
        t.join()
    assert sorted(rows[:, 0].tolist()) == [0, 1, 2, 3]
    # forked from the caller, each worker would hold a copy of the taken lock and wait in vain
    assert rows[:, 1].tolist() == [1, 1, 1, 1]
    assert os.getpid() not in rows[:, 2].tolist()  # the workers' parent is the fork server


def test_no_workers_means_no_context_and_the_context_is_a_fork_server():
    assert loader_workers(0) == {"num_workers": 0, "multiprocessing_context": None}
    assert loader_workers(3)["num_workers"] == 3
    assert loader_workers(3)["multiprocessing_context"].get_start_method() == worker_context().get_start_method()
    assert worker_context().get_start_method() == "forkserver"  # Linux


def _loader_calls(path: Path) -> list[ast.Call]:
    return [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)
            and getattr(n.func, "id", getattr(n.func, "attr", None)) == "DataLoader"]


def test_every_loader_in_the_package_starts_its_workers_this_way():
    root = Path(__file__).resolve().parents[2] / "littune"
    calls = [(p, c) for p in root.rglob("*.py") for c in _loader_calls(p)]
    assert len(calls) >= 4

    def spread(c):  # the **loader_workers(...) keyword
        return [k for k in c.keywords if k.arg is None and getattr(k.value.func, "id", None) == "loader_workers"]

    bypass = [f"{p}:{c.lineno}" for p, c in calls if not spread(c) or any(k.arg == "num_workers" for k in c.keywords)]
    assert bypass == []


GUARDED = '''
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from littune.data.workers import loader_workers


def main():
    kw = loader_workers(1)
    rows = torch.cat([b[0] for b in DataLoader(TensorDataset(torch.arange(6)), batch_size=2, **kw)])
    print(kw["multiprocessing_context"].get_start_method(), rows.tolist())


if __name__ == "__main__":
    main()
'''
UNGUARDED = '''
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from littune.data.workers import loader_workers

kw = loader_workers(1)
rows = torch.cat([b[0] for b in DataLoader(TensorDataset(torch.arange(6)), batch_size=2, **kw)])
print(kw["multiprocessing_context"].get_start_method(), rows.tolist())
'''


@pytest.mark.parametrize("source, method", [(GUARDED, "forkserver"), (UNGUARDED, "fork")], ids=["guarded", "unguarded"])
def test_a_script_without_a_main_guard_still_works_and_is_told_why_its_workers_fork(tmp_path, source, method):
    """A fork server re-runs the main script in each worker: one without the guard would start
    workers from its workers. It gets forked workers and a warning naming the script and the fix."""
    script = tmp_path / "job.py"
    script.write_text(source)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == f"{method} [0, 1, 2, 3, 4, 5]"
    warned = "outside an `if __name__ == \"__main__\":` block" in done.stderr
    assert warned == (method == "fork") and (not warned or str(script) in done.stderr)


def test_what_counts_as_code_at_a_scripts_top_level(tmp_path):
    cases = {'"""doc."""\nimport os\nX = 3\nY: int = 4\ndef f():\n    f()\nclass A:\n    pass\n': False,
             'import os\nif __name__ == "__main__":\n    os.system("true")\n': False,
             'import os\nos.getcwd()\n': True,
             'import glob\nFILES = sorted(glob.glob("*"))\n': True,
             'for i in range(3):\n    pass\n': True,
             'import sys\nsys.path.insert(0, "benchmarks")\nfrom common import REPO\n': False,
             'import sys\nsys.path.append("x")\nsys.stdout.write("hi")\n': True,
             'def broken(:\n': False}
    for i, (source, unguarded) in enumerate(cases.items()):
        path = tmp_path / f"s{i}.py"
        path.write_text(source)
        assert workers._unguarded_script(str(path)) is unguarded, source


def test_python_dash_m_littune_is_a_guarded_main_script():
    """``python -m littune study ...`` (the study runner's way in) starts its workers from a fork server."""
    import littune.__main__ as entry

    assert workers._unguarded_script(entry.__file__) is False
