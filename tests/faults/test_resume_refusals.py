"""``--resume`` continues only what the checkpoint was: changed training settings or data are refused,
naming every key with both values, and nothing in the run is touched; settings that cannot change
the result are allowed and recorded in resumes.json."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from littune.cli import main
from littune.runs.weights import WeightsError
from littune.runs import load_run
from littune.train import Trainer, load_config
from littune.train.resume import ResumeMismatch

from .conftest import STEPS, run_overrides


def _files(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.fixture
def resume(run_copy, fault_data, tower_weights, tokenizer_file, capsys):
    """resume(*overrides) -> (exit code, stderr) of `littune train ... --resume` on a copy of the run."""
    def go(*extra: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main(["train", *run_overrides(run_copy, fault_data, tower_weights, tokenizer_file, *extra), "--resume"])
        return code, capsys.readouterr().err
    return go


@pytest.mark.parametrize("extra, lines", [
    (["optim.lr=1e-3"], ["optim.lr: 0.002 (checkpoint) -> 0.001 (now)"]),
    (["train.batch_size=16"], ["train.batch_size: 8 (checkpoint) -> 16 (now)"]),
    (["train.steps=12"], ["train.steps: 6 (checkpoint) -> 12 (now)", "learning-rate schedule"]),
    (["model.text.width=64"], ["model.text.width: 32 (checkpoint) -> 64 (now)"]),
    (["optim.lr=1e-3", "train.seed=3", "model.text.dropout=0.0"],
     ["optim.lr: 0.002 (checkpoint) -> 0.001", "train.seed: 0 (checkpoint) -> 3", "model.text.dropout: 0.1"]),
])
def test_changed_training_settings_are_refused(extra, lines, resume, run_copy):
    before = _files(run_copy)
    code, err = resume(*extra)
    assert code == 2 and "Traceback" not in err and "size mismatch" not in err
    assert "cannot resume" in err and "checkpoint's values" in err
    for line in lines:
        assert line in err, err
    assert err.count("(checkpoint) ->") == len(extra)  # every changed key, and only those
    assert _files(run_copy) == before  # config.yaml, cache_manifest.json, metrics: untouched


def test_another_training_cache_is_refused(resume, run_copy, fault_data):
    before = _files(run_copy)
    code, err = resume(f"data.train_cache={fault_data['other_cache']}")
    assert code == 2 and "not the data it was trained on" in err
    assert "cache_manifest.source:" in err and str(fault_data["other_cache"]) in err
    assert _files(run_copy) == before  # the run's cache_manifest.json still names the cache it trained on


def test_settings_that_cannot_change_the_result_are_allowed_and_recorded(resume, run_copy, finished_run, fault_data,
                                                                         tmp_path):
    moved = Path(shutil.copytree(fault_data["cache"], tmp_path / "moved_cache"))  # the same data elsewhere
    weights = (run_copy / "model.safetensors").read_bytes()
    code, err = resume("train.log_every=2", "train.threads=2", "train.eval_every=3", f"data.train_cache={moved}",
                       f"train.init_from={finished_run}")  # a warm start: a resumed run loads its own weights
    assert code == 0, err
    record = json.loads((run_copy / "resumes.json").read_text())["resumes"]
    assert len(record) == 1 and record[0]["step"] == STEPS and record[0]["checkpoint"].endswith(f"step_{STEPS:07d}")
    assert record[0]["changed"] == {
        "data.train_cache": {"checkpoint": str(fault_data["cache"]), "now": str(moved)},
        "train.eval_every": {"checkpoint": 0, "now": 3}, "train.log_every": {"checkpoint": 1, "now": 2},
        "train.threads": {"checkpoint": 1, "now": 2}, "train.init_from": {"checkpoint": None, "now": str(finished_run)},
        "train.out_dir": {"checkpoint": str(finished_run), "now": str(run_copy)}}  # this copy of the run
    cfg = load_config(run_copy / "config.yaml")  # describes what runs now
    assert (cfg.train.log_every, cfg.data.train_cache) == (2, str(moved))
    assert (run_copy / "model.safetensors").read_bytes() == weights  # a finished run: nothing more trained


def test_resume_without_a_checkpoint_is_an_error(tmp_path, fault_data, tower_weights, tokenizer_file, capsys):
    run = tmp_path / "never_trained"
    capsys.readouterr()
    assert main(["train", *run_overrides(run, fault_data, tower_weights, tokenizer_file), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "holds no checkpoint to resume from" in err and "without --resume" in err
    assert not run.exists()  # nothing started, nothing made
    run.mkdir()
    (run / "config.yaml").write_text("name: x\n")
    with pytest.raises(ResumeMismatch, match="no checkpoint"):
        Trainer(load_config(None, run_overrides(run, fault_data, tower_weights, tokenizer_file)), resume=True)


def test_weights_of_another_width_are_named_not_a_size_mismatch(run_copy):
    """A run whose config.yaml was edited to another width: a message naming the shapes."""
    cfg = run_copy / "config.yaml"
    cfg.write_text(cfg.read_text().replace("width: 32", "width: 64"))
    with pytest.raises(WeightsError, match=r"other shapes .*text\..*file \(\d+, 32\), model \(\d+, 64\)"):
        load_run(run_copy)
