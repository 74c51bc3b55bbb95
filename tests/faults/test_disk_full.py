"""A checkpoint that cannot be written (full or read-only disk) stops the run with a clear message,
keeps the previous checkpoint intact and loadable, leaves no half-written file, and resuming after
the disk is fixed ends exactly where an uninterrupted run does."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import littune.runs.checkpoints as checkpoints
from littune.cli import main
from littune.runs import list_checkpoints, load_run
from littune.runs.verify import verify_model

from .conftest import EVERY, STEPS, enospc_after, run_overrides, small_filesystem


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def _stopped_cleanly(run: Path, err: str) -> None:
    assert "No space left on device" in err and "Traceback" not in err
    assert f"step_{EVERY:07d} is intact" in err and "--resume" in err
    assert [p.name for p in list_checkpoints(run)] == [f"step_{EVERY:07d}"]  # the one before: kept
    assert not list((run / "checkpoints").glob(".*"))  # no temporary folder left behind
    assert not (run / "model.safetensors").exists() and not (run / "summary.json").exists()
    assert verify_model(list_checkpoints(run)[0]).ok  # intact: every group matches its fingerprint
    load_run(run.parent / run.name, checkpoint=list_checkpoints(run)[0])


@pytest.mark.parametrize("writer", ["state", "weights"])
def test_a_checkpoint_write_that_fails_keeps_the_previous_one(writer, tmp_path, monkeypatch, fault_data,
                                                              tower_weights, tokenizer_file, finished_run, capsys):
    """The disk fills while the checkpoint of the last step is written (state.pt or its weights)."""
    run = tmp_path / "run"
    steps_done = []
    if writer == "state":
        monkeypatch.setattr(checkpoints.torch, "save", enospc_after(torch.save, lambda: len(steps_done) == 2))
    else:
        import littune.runs.weights as weights

        monkeypatch.setattr(weights, "save_file", enospc_after(weights.save_file, lambda: len(steps_done) == 2))
    real_save = checkpoints.save_checkpoint

    def counting(run_dir, step, *a, **k):
        steps_done.append(step)
        return real_save(run_dir, step, *a, **k)

    monkeypatch.setattr(checkpoints, "save_checkpoint", counting)
    import littune.train.loop as loop

    monkeypatch.setattr(loop, "save_checkpoint", counting)
    capsys.readouterr()
    assert main(["train", *run_overrides(run, fault_data, tower_weights, tokenizer_file)]) == 2
    _stopped_cleanly(run, capsys.readouterr().err)
    assert steps_done == [EVERY, STEPS]

    monkeypatch.undo()  # space freed: the same command with --resume finishes the run
    assert main(["train", *run_overrides(run, fault_data, tower_weights, tokenizer_file), "--resume"]) == 0
    _same_weights(run, finished_run)


def test_a_full_small_filesystem(tmp_path, fault_data, tower_weights, tokenizer_file, finished_run, capsys):
    """The same on a real file system that fills up: room for one checkpoint, not two."""
    with small_filesystem(tmp_path / "small", 400) as small:
        run = small / "run"
        capsys.readouterr()
        assert main(["train", *run_overrides(run, fault_data, tower_weights, tokenizer_file),
                     "train.keep_checkpoints=0"]) == 2
        _stopped_cleanly(run, capsys.readouterr().err)
        moved = Path(shutil.copytree(run, tmp_path / "bigger" / "run"))
    assert main(["train", *run_overrides(moved, fault_data, tower_weights, tokenizer_file),
                 "train.keep_checkpoints=0", "--resume"]) == 0
    _same_weights(moved, finished_run)


def test_a_read_only_filesystem(tmp_path, fault_data, tower_weights, tokenizer_file, capsys):
    with small_filesystem(tmp_path / "ro", 64, readonly=True) as ro:
        capsys.readouterr()
        assert main(["train", *run_overrides(ro / "run", fault_data, tower_weights, tokenizer_file)]) == 2
        err = capsys.readouterr().err
        assert "Read-only file system" in err and str(ro / "run") in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 2  # the error, then the fix
        assert main(["embed", "--data", str(fault_data["csv"]), "--out", str(ro / "cache"), "--tower",
                     "timm:test_vit", "--checkpoint", str(tower_weights), "--workers", "0", "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert "Read-only file system" in err and "Traceback" not in err
