"""Two nodes simulated on this machine: two ``torchrun --nnodes 2`` launchers of one process each, meeting
by c10d rendezvous on 127.0.0.1 (gloo). Killing one node (its launcher and its worker) stops the other
with a clear error within a bounded time, never a hang: a peer that dies is noticed at once, and one
that hangs (SIGSTOP) once a collective has waited ``train.collective_timeout_s``. Starting both nodes
again with ``--resume`` continues exactly as an uninterrupted run (dropout on: the random state matters).

Node a hosts the rendezvous store and node b joins it; the node that fails is b. (When the store's
host dies, the other launchers stop too, with torchrun's own rendezvous error.)"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

from littune.runs import list_checkpoints

from tests.cache.conftest import tokenizer_file, tower_weights  # noqa: F401  (fixtures)
from tests.cache.tiny_data import cli_env, wait_for_file
from tests.distributed.test_embed_ranks import Launched, finish, kill_tree, torchrun
from tests.distributed.test_resume_ddp import EVERY, STEPS, setup, steps_run  # noqa: F401  (setup: a fixture)

TIMEOUT_S = 10  # train.collective_timeout_s of these runs
# The surviving node, launcher included, is gone within this of the fault (measured on 2 busy cores:
# a hung peer's error comes after 2 timeouts, the launcher's exit some seconds later).
BOUND_S = 3 * TIMEOUT_S + 60


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, f"no rendezvous store on port {port} within {timeout:.0f} s"
        time.sleep(0.1)


def start_node(boot: Path, port: int, job: str, args: list[str], sleep: float = 0.0) -> subprocess.Popen:
    """One node: a torchrun launcher with one worker, in a session of its own."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
           "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", job,
           "--max_restarts", "0", str(boot), *args]
    return subprocess.Popen(cmd, env=cli_env(sleep=sleep), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _fail_one_node(boot: Path, args: list[str], run: Path, fault) -> tuple[str, float]:
    """Two nodes train (0.5 s a step); after the first checkpoint ``fault(node b)``. Returns node a's
    stderr and the seconds from the fault until node a (launcher and worker) had stopped, with an error."""
    port = _port()
    a = start_node(boot, port, f"job{port}", args, sleep=0.5)
    _wait_listening(port, a)  # node a hosts the rendezvous store; node b joins it
    b = start_node(boot, port, f"job{port}", args, sleep=0.5)
    try:
        wait_for_file(run / "checkpoints" / f"step_{EVERY:07d}", a, "checkpoint", timeout=300)
        time.sleep(0.6)  # into the next step
        fault(b)
        since = time.monotonic()
        try:
            _, err = a.communicate(timeout=BOUND_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"node a still runs {BOUND_S} s after node b failed: a hang")
        took = time.monotonic() - since
    finally:
        kill_tree(a)
        kill_tree(b)
        for p in (a, b):
            for f in (p.stdout, p.stderr):
                f.close()
    assert a.returncode != 0
    return err, took


@pytest.fixture(scope="module")
def nodes(setup):
    """(root, boot, args(run)): the DDP resume test's tiny run, its collectives bounded by TIMEOUT_S."""
    root, boot, overrides = setup
    return root, boot, lambda run: ["train", *overrides(run), f"train.collective_timeout_s={TIMEOUT_S}"]


@pytest.fixture(scope="module")
def reference(nodes):
    """The same run, uninterrupted, with 2 processes (same ranks, same collectives), started at once."""
    root, boot, args = nodes
    run = Launched(torchrun(boot, args(root / "reference")), root / "reference")
    yield run
    run.stop()


@pytest.mark.xdist_group("torchrun")
def test_a_killed_node_stops_the_other_and_both_resume_exactly(nodes, reference, monkeypatch):
    root, boot, args = nodes
    run = root / "nodes"
    err, took = _fail_one_node(boot, args(run), run, lambda b: kill_tree(b))  # node b is gone, worker and all
    assert took < BOUND_S
    assert "littune train: error: lost contact with another process of this run" in err, err[-3000:]
    assert "--resume" in err
    stopped_at = int(list_checkpoints(run)[-1].name.split("_")[1])
    assert stopped_at < STEPS and not (run / "model.safetensors").exists()
    assert not list((run / "checkpoints").glob(".*"))

    log = root / "resumed_steps"
    monkeypatch.setenv("LITTUNE_TEST_STEP_LOG", str(log))
    port = _port()
    nodes = [start_node(boot, port, "lit-b", [*args(run), "--resume", "--json"]) for _ in range(2)]
    try:
        outs = [finish(n, timeout=300) for n in nodes]
    finally:
        for n in nodes:
            kill_tree(n)
    assert json.loads([o for o in outs if o.strip()][0].splitlines()[-1])["step"] == STEPS  # printed by rank 0
    for rank in (0, 1):  # each node started at the checkpoint and ran only what was left
        assert steps_run(log, rank) == list(range(stopped_at, STEPS)), rank

    ref = load_file(str(reference.result() / "model.safetensors"))
    got = load_file(str(run / "model.safetensors"))
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), f"{k} differs after the nodes resumed from step {stopped_at}"


@pytest.mark.xdist_group("torchrun")
def test_a_hung_node_stops_the_other_after_the_collective_timeout(nodes):
    root, boot, args = nodes
    run = root / "hung"

    def hang(b: subprocess.Popen) -> None:  # node b stops answering: no process exits, no connection closes
        for p in [psutil.Process(b.pid), *psutil.Process(b.pid).children(recursive=True)]:
            p.suspend()

    err, took = _fail_one_node(boot, args(run), run, hang)
    assert TIMEOUT_S * 0.8 <= took < BOUND_S, took  # it waited for the timeout, and not for ever
    assert "littune train: error: lost contact with another process of this run" in err, err[-3000:]
    assert f"train.collective_timeout_s={TIMEOUT_S}" in err
