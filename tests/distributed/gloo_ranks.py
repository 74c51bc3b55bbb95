"""Run one function as every rank of a gloo group on this machine, in seconds and without torchrun.

This process (the test's) is rank 0: it runs the function itself, so the code under test runs in
the test process as it does in a trainer. The other ranks are fresh Python processes started here
(``python -m tests.distributed.gloo_ranks``) that import the same ``littune`` as this process and
inherit its environment. Each rank's return value (tensors, lists, ...) comes back in rank order.

    results = run_ranks(3, "tests.distributed.test_ring_loss:ring_case", tmp_path, "sigmoid", 2)
"""
from __future__ import annotations

import datetime
import importlib
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist

import littune

TESTS_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the `tests` package


def _target(name: str):
    module, _, function = name.partition(":")
    return getattr(importlib.import_module(module), function)


def run_ranks(world: int, target: str, tmp: Path, *args: str, timeout_s: float = 240.0) -> list:
    """``target`` ("module:function", called as ``function(*args)``) on ``world`` gloo ranks.

    ``timeout_s`` bounds a hang only: ranks connect in seconds on an idle machine, but each must
    import torch first, which took over 60 s on a 2-core machine loaded with other jobs."""
    timeout = datetime.timedelta(seconds=timeout_s)
    store = dist.TCPStore("127.0.0.1", 0, world, is_master=True, timeout=timeout, wait_for_workers=False)
    package_root = Path(littune.__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(dict.fromkeys([str(package_root), str(TESTS_ROOT)]))}
    outs = [tmp / f"rank{r}.pt" for r in range(world)]
    procs = [subprocess.Popen([sys.executable, "-m", "tests.distributed.gloo_ranks", target, str(r), str(world),
                               str(store.port), str(outs[r]), str(timeout_s), *args],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for r in range(1, world)]
    try:
        dist.init_process_group("gloo", store=store, rank=0, world_size=world, timeout=timeout)
        try:
            mine = _target(target)(*args)
        finally:
            dist.destroy_process_group()
        for r, p in enumerate(procs, start=1):
            _, err = p.communicate(timeout=timeout_s)
            assert p.returncode == 0, f"rank {r} failed:\n{err[-3000:]}"
        return [mine] + [torch.load(out) for out in outs[1:]]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


def _rank_main(target: str, rank: str, world: str, port: str, out: str, timeout_s: str, *args: str) -> None:
    timeout = datetime.timedelta(seconds=float(timeout_s))
    store = dist.TCPStore("127.0.0.1", int(port), int(world), is_master=False, timeout=timeout)
    dist.init_process_group("gloo", store=store, rank=int(rank), world_size=int(world), timeout=timeout)
    try:
        torch.save(_target(target)(*args), out)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(1)
    _rank_main(*sys.argv[1:])
