"""`littune train` under a 2-process torchrun: killed after a checkpoint and resumed with 2
processes it ends bit-identical to an uninterrupted 2-process run; checkpoints and metrics are
written once (by rank 0); and 2 processes train the same model as 1 on the same global batch.

The text tower has dropout (the restored random state matters), and each resumed process is shown
to start at the checkpoint's step and run only the steps after it (LITTUNE_TEST_STEP_LOG)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from littune.train import Trainer, load_config
from littune.runs import list_checkpoints
from littune.runs.checkpoints import WorldSizeChanged

from tests.cache.conftest import tokenizer_file, tower_weights  # noqa: F401  (fixtures)
from tests.cache.tiny_data import _BOOT, cli_env, make_cache, model_overrides, wait_for_file
from tests.distributed.test_embed_ranks import Launched, finish, kill_rank, kill_tree, torchrun

# Prepended to the CLI boot script: each process appends the index of every step it trains to
# $LITTUNE_TEST_STEP_LOG.<rank> (changes no result).
STEP_LOG = """
import os
if os.environ.get("LITTUNE_TEST_STEP_LOG"):
    import littune.train.loop as _loop
    _step = _loop.Trainer.train_step
    def _logged(self, batch):
        with open(f"{os.environ['LITTUNE_TEST_STEP_LOG']}.{self.rank}", "a") as f:
            f.write(f"{self.step}\\n")
        return _step(self, batch)
    _loop.Trainer.train_step = _logged
"""


def steps_run(log: Path, rank: int) -> list[int]:
    path = Path(f"{log}.{rank}")
    return [int(x) for x in path.read_text().split()] if path.is_file() else []


STEPS, EVERY, BATCH = 12, 4, 16  # global batch 16: 8 rows per process


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tower_weights, tokenizer_file):  # noqa: F811
    root = tmp_path_factory.mktemp("resume_ddp")
    make_cache(root, 40, tower_weights)
    boot = root / "boot.py"
    boot.write_text(STEP_LOG + _BOOT)

    def overrides(run: Path, dropout: float = 0.1) -> list[str]:
        return model_overrides(tower_weights, tokenizer=tokenizer_file) + [
            f"data.train_cache={root / 'cache'}", f"train.out_dir={run}", f"train.steps={STEPS}",
            f"train.batch_size={BATCH}", "train.log_every=1", f"train.ckpt_every={EVERY}", "train.keep_checkpoints=2",
            "train.progress=false", "train.threads=1", "optim.warmup_steps=3", "optim.lr=2e-3",
            f"model.text.dropout={dropout}"]

    return root, boot, overrides


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


@pytest.fixture(scope="module")
def two(setup):
    """The uninterrupted 2-process run, started at once; ``_two`` waits for it."""
    root, boot, overrides = setup
    run = Launched(torchrun(boot, ["train", *overrides(root / "two"), "--json"]), root / "two")
    yield run
    run.stop()


def _two(two: Launched) -> Path:
    run = two.result()
    report = json.loads(two.stdout.splitlines()[-1])  # printed once, by rank 0
    assert report["world_size"] == 2 and report["step"] == STEPS and len(two.stdout.splitlines()) == 1
    return run


@pytest.mark.xdist_group("torchrun")
def test_two_process_run_killed_and_resumed_equals_uninterrupted(setup, two, monkeypatch):
    root, boot, overrides = setup
    run = root / "resumed"
    # Slowed to 0.5 s a step; killed (torchrun and both workers) a little after its first checkpoint,
    # while the uninterrupted run (the fixture) goes on beside it.
    victim = torchrun(boot, ["train", *overrides(run)], sleep=0.5)
    try:
        wait_for_file(run / "checkpoints" / f"step_{EVERY:07d}", victim, "checkpoint")
        time.sleep(0.3)  # into the next step (metrics rows past the checkpoint)
    finally:
        kill_tree(victim)
        victim.stdout.close()
        victim.stderr.close()

    stopped_at = int(list_checkpoints(run)[-1].name.split("_")[1])
    assert stopped_at < STEPS and not (run / "model.safetensors").exists()

    log = root / "resumed_steps"
    monkeypatch.setenv("LITTUNE_TEST_STEP_LOG", str(log))
    out = finish(torchrun(boot, ["train", *overrides(run), "--resume", "--json"]))
    assert json.loads(out.splitlines()[-1])["step"] == STEPS
    for rank in (0, 1):  # each process started at the checkpoint and ran only what was left
        assert steps_run(log, rank) == list(range(stopped_at, STEPS)), rank
    assert [r["step"] for r in json.loads((run / "resumes.json").read_text())["resumes"]] == [stopped_at]
    two = _two(two)

    a, b = _weights(two), _weights(run)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resuming from step {stopped_at}"

    for r in (two, run):
        # Written once, by rank 0: each step's metrics row once, the checkpoints kept, no leftovers.
        rows = _rows(r)
        assert [row["step"] for row in rows] == list(range(1, STEPS + 1))
        assert [p.name for p in list_checkpoints(r)] == [f"step_{s:07d}" for s in (8, 12)]
        assert not list((r / "checkpoints").glob(".tmp*"))
        assert json.loads((r / "summary.json").read_text())["world_size"] == 2
    for ra, rb in zip(_rows(two), _rows(run)):
        for key in ("loss", "lr", "temperature", "grad_norm"):
            assert ra[key] == rb[key], (ra["step"], key)


@pytest.mark.xdist_group("torchrun")
def test_two_processes_train_the_one_process_model(setup):
    """Without dropout (its masks are drawn per process: 2 x 8 rows are not 1 x 16), the same model."""
    root, boot, overrides = setup
    launched = Launched(torchrun(boot, ["train", *overrides(root / "two_plain", dropout=0.0), "--json"]), root / "two_plain")
    try:
        summary = Trainer(load_config(None, overrides(root / "one", dropout=0.0))).fit()  # here, 1 process, meanwhile
        two = _two(launched)
    finally:
        launched.stop()
    assert summary["world_size"] == 1
    one_w, two_w = _weights(root / "one"), _weights(two)
    assert one_w.keys() == two_w.keys()
    for k in one_w:  # DDP averages exact gradients: equal up to float summation order
        torch.testing.assert_close(two_w[k], one_w[k], rtol=1e-4, atol=1e-5, msg=k)
    rows1, rows2 = _rows(root / "one"), _rows(two)
    for r1, r2 in zip(rows1, rows2):
        assert r1["loss"] == pytest.approx(r2["loss"], rel=1e-4), r1["step"]


@pytest.mark.xdist_group("torchrun")
def test_resuming_with_another_number_of_processes_is_refused(setup, two, tmp_path):
    """A 2-process checkpoint resumed by 1 process: each process's random state and share of the batch
    belong to a rank, so the run could not continue as it was; the error names both numbers."""
    root, boot, overrides = setup
    run = tmp_path / "copy"
    shutil.copytree(_two(two), run)
    with pytest.raises(WorldSizeChanged, match=r"written by a run of 2 process\(es\), this run has 1 \(this is rank 0\)"):
        Trainer(load_config(None, overrides(run)), resume=True)


@pytest.mark.xdist_group("torchrun")
def test_elastic_restart_after_a_killed_rank_resumes_and_equals_uninterrupted(setup, two, monkeypatch):
    """``torchrun --max-restarts 1``: rank 1 killed mid-training; torchrun starts both processes again,
    they continue from the last checkpoint by themselves (no --resume) and end with the weights of
    the uninterrupted 2-process run."""
    root, boot, overrides = setup
    run, log = root / "elastic", root / "elastic_steps"
    monkeypatch.setenv("LITTUNE_TEST_STEP_LOG", str(log))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--max-restarts", "1",
           "--monitor-interval", "0.2", str(boot), "train", *overrides(run), "--json"]
    proc = subprocess.Popen(cmd, env=cli_env(sleep=0.5), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        wait_for_file(run / "checkpoints" / f"step_{EVERY:07d}", proc, "checkpoint")
        time.sleep(0.6)  # into the steps after it
        kill_rank(proc, 1)
        out, err = proc.communicate(timeout=300)
    finally:
        kill_tree(proc)
    assert proc.returncode == 0, err[-3000:]
    assert "torchrun restart 1: resuming from step" in err
    assert json.loads(out.splitlines()[-1])["step"] == STEPS

    resumed_at = [r["step"] for r in json.loads((run / "resumes.json").read_text())["resumes"]]
    assert len(resumed_at) == 1 and resumed_at[0] in (EVERY, 2 * EVERY)
    for rank in (0, 1):  # the first attempt ran past the checkpoint; the restart ran only what was left
        steps = steps_run(log, rank)
        restart = next(i for i in range(1, len(steps)) if steps[i] <= steps[i - 1])
        assert steps[:restart] == list(range(restart)) and restart > resumed_at[0], (rank, steps)
        assert steps[restart:] == list(range(resumed_at[0], STEPS)), (rank, steps)

    a, b = _weights(_two(two)), _weights(run)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after the elastic restart from step {resumed_at[0]}"
