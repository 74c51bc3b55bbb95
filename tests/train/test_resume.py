"""A training run killed after a checkpoint and resumed ends bit-identical to an uninterrupted run.

The text tower has dropout, so the restored random state matters (resuming without it trains other
weights, checked too), and the resumed run is shown to start at the checkpoint's step and to run
only the steps after it (a restart from step 0 would also end equal: training is deterministic)."""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import littune.runs.checkpoints as checkpoints
import littune.train.loop as loop
from littune.cli import main
from littune.train import Trainer, load_config
from littune.runs import latest_checkpoint

from tests.cache.tiny_data import cli_command, cli_env, killed_at_the_end, make_cache, model_overrides, wait_for_file

STEPS, EVERY = 24, 6


@pytest.fixture(scope="module")
def cache(tmp_path_factory, tower_weights) -> Path:
    return make_cache(tmp_path_factory.mktemp("resume_data"), 40, tower_weights)


def _overrides(run: Path, cache: Path, weights: Path, tokenizer: Path) -> list[str]:
    return model_overrides(weights, tokenizer=tokenizer) + [
        f"data.train_cache={cache}", f"train.out_dir={run}", f"train.steps={STEPS}", "train.batch_size=16",
        "train.log_every=1", f"train.ckpt_every={EVERY}", "train.keep_checkpoints=2", "train.progress=false",
        "train.threads=1", "optim.warmup_steps=4", "optim.lr=2e-3", "model.text.dropout=0.1"]


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.xdist_group("subprocess")
def test_killed_and_resumed_run_equals_uninterrupted_run(tmp_path, cache, tower_weights, tokenizer_file, capsys):
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    # B: the real command, slowed to 0.15 s a step, killed a little after its first checkpoint.
    victim = subprocess.Popen(cli_command("train", *_overrides(run_b, cache, tower_weights, tokenizer_file)),
                              env=cli_env(sleep=0.15), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with killed_at_the_end(victim):
        # A: uninterrupted, meanwhile, in this process.
        assert main(["train", *_overrides(run_a, cache, tower_weights, tokenizer_file)]) == 0
        summary = capsys.readouterr().out.splitlines()  # without --json: one line a person reads
        assert len(summary) == 1 and summary[0].startswith(f"trained {STEPS} steps in ") and str(run_a) in summary[0]
        wait_for_file(run_b / "checkpoints" / f"step_{EVERY:07d}", victim, "checkpoint")
        time.sleep(0.4)  # a few more steps (and metrics rows) past the checkpoint

    stopped_at = int(latest_checkpoint(run_b).name.split("_")[1])
    assert stopped_at < STEPS and not (run_b / "summary.json").exists()
    assert not (run_b / "model.safetensors").exists()

    no_rng = Path(shutil.copytree(run_b, tmp_path / "no_rng"))
    ran = []  # the step index of every training step the resumed process runs
    step = loop.Trainer.train_step

    def counted(self, batch):
        ran.append(self.step)
        return step(self, batch)

    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop.Trainer, "train_step", counted)
        assert main(["train", *_overrides(run_b, cache, tower_weights, tokenizer_file), "--resume", "--json"]) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)  # --json: the JSON summary alone
    assert report["step"] == STEPS
    assert f"resuming from step {stopped_at} of {STEPS}" in out.err  # it says that it resumed, and where
    assert ran == list(range(stopped_at, STEPS))  # started at the checkpoint, ran only what was left
    resumes = json.loads((run_b / "resumes.json").read_text())["resumes"]
    assert [r["step"] for r in resumes] == [stopped_at] and resumes[0]["changed"] == {}

    a, b = load_file(str(run_a / "model.safetensors")), load_file(str(run_b / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resuming from step {stopped_at}"

    # The metrics log holds each step once (rows past the checkpoint were dropped), same values.
    rows_a, rows_b = _rows(run_a), _rows(run_b)
    assert [r["step"] for r in rows_b] == list(range(1, STEPS + 1)) == [r["step"] for r in rows_a]
    for ra, rb in zip(rows_a, rows_b):
        for key in ("loss", "lr", "temperature", "grad_norm"):
            assert ra[key] == rb[key], (ra["step"], key)
    sa, sb = (json.loads((r / "summary.json").read_text()) for r in (run_a, run_b))
    assert sa["fingerprints"] == sb["fingerprints"]

    # The restored random state matters: resumed without it, dropout draws other masks, other weights.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(checkpoints, "set_rng_state", lambda state: None)
        assert main(["train", *_overrides(no_rng, cache, tower_weights, tokenizer_file), "--resume"]) == 0
    c = load_file(str(no_rng / "model.safetensors"))
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_new_run_into_a_folder_with_checkpoints_is_refused(tmp_path, cache, tower_weights, tokenizer_file, capsys):
    run = tmp_path / "run"
    overrides = _overrides(run, cache, tower_weights, tokenizer_file) + ["train.steps=3", "train.ckpt_every=2"]
    Trainer(load_config(None, overrides)).fit()
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}

    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(load_config(None, overrides))
    capsys.readouterr()
    assert main(["train", *overrides]) == 2
    err = capsys.readouterr().err
    assert str(run) in err and "--resume" in err
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before  # nothing touched
