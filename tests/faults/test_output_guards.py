"""Outputs never overwrite what is not theirs: one test per command that writes a folder.

Before: `train.out_dir` pointing at an export, or at a run whose checkpoints/ was deleted, silently
replaced its model.safetensors, config.yaml and model_info.json (the guard looked only for
checkpoints); `export --out OUT` deleted a folder OUT.tmp of the user's with its contents.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import littune
from littune.config import load_config, to_yaml
from littune.runs.target import FolderTaken, check_run_folder, temp_folder

RECORDS = {"model.safetensors": b"weights", "config.yaml": b"name: theirs\n", "model_info.json": b"{}"}


def _folder(path: Path, files: dict[str, bytes]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (path / name).write_bytes(data)
    return path


def _unchanged(path: Path, files: dict[str, bytes]) -> None:
    assert {n: (path / n).read_bytes() for n in files} == files


@pytest.mark.parametrize("files", [
    {**RECORDS, "export.json": b"{}"},  # an export
    RECORDS,  # a finished run whose checkpoints/ was deleted
    {"notes.txt": b"mine"},  # the user's own files
])
def test_train_refuses_a_folder_it_does_not_own(tmp_path, files):
    from littune.train.loop import Trainer

    out = _folder(tmp_path / "out", files)
    cfg = load_config(None, ["data.train=x.csv", f"train.out_dir={out}"])
    with pytest.raises(FolderTaken, match=r"train\.out_dir .*out"):
        Trainer(cfg)
    _unchanged(out, files)


def test_train_restarts_its_own_run_that_never_checkpointed(tmp_path):
    cfg = load_config(None, ["data.train=x.csv", f"train.out_dir={tmp_path}"])
    _folder(tmp_path, {"config.yaml": to_yaml(cfg).encode(), "metrics.jsonl": b""})
    check_run_folder(tmp_path, to_yaml(cfg))  # its own unfinished work: fine
    with pytest.raises(FolderTaken, match="config.yaml"):
        check_run_folder(tmp_path, to_yaml(load_config(None, ["data.train=y.csv"])))


def test_temp_folders_are_unique_and_never_the_users(tmp_path):
    users = _folder(tmp_path / "OUT.tmp", {"keep.txt": b"mine"})
    a, b = temp_folder(tmp_path / "OUT"), temp_folder(tmp_path / "OUT")
    assert a != b and a.parent == tmp_path and a.name.startswith(".OUT.tmp-") and not any(a.iterdir())
    _unchanged(users, {"keep.txt": b"mine"})


def test_export_keeps_the_users_out_tmp_folder(tiny_lit_run, tmp_path):
    from littune.infer.export import export_model

    users = _folder(tmp_path / "exp.tmp", {"keep.txt": b"mine"})
    export_model(littune.load(tiny_lit_run["run"]), tmp_path / "exp", hf=False)
    assert (tmp_path / "exp" / "export.json").is_file()
    _unchanged(users, {"keep.txt": b"mine"})  # before: deleted with its contents
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp", "exp.tmp"]  # no temporary left behind


def test_index_refuses_a_run_folder(tiny_lit_run, tmp_path):
    out = _folder(tmp_path / "idx", RECORDS)
    with pytest.raises(FolderTaken, match="model.safetensors|config.yaml"):
        littune.load(tiny_lit_run["run"]).build_index(tiny_lit_run["images"][0].parent, out)
    _unchanged(out, RECORDS)


def test_study_refuses_an_export_folder(tmp_path):
    from littune.study.config import StudyConfig
    from littune.study.runner import run_study

    files = {"export.json": b"{}", "model.safetensors": b"w"}
    out = _folder(tmp_path / "study", files)
    with pytest.raises(FolderTaken, match="export.json"):
        run_study(StudyConfig(out_dir=str(out), settings={"a": []}), progress=False)
    setting = _folder(tmp_path / "s2" / "a", {"model.safetensors": b"w"})  # a setting folder holding a model
    with pytest.raises(FolderTaken, match="model.safetensors"):
        run_study(StudyConfig(out_dir=str(setting.parent), settings={"a": []}), progress=False)
    _unchanged(out, files)
