"""Every weight group is fingerprinted: a changed head, temperature, text tower or locked tower in a
run, a checkpoint or an export is refused on load, naming the group; ``littune verify`` shows it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import littune
from littune.cli import main
from littune.runs import load_run, list_checkpoints
from littune.runs.weights import WeightsError

GROUPS = ["image", "text", "image_head", "text_head", "logit_scale", "logit_bias", "model"]


def _edit(path: Path, key: str, change) -> None:
    state = load_file(str(path))
    state[key] = change(state[key].clone())
    save_file(state, str(path))


def _flip_bit(t: torch.Tensor) -> torch.Tensor:
    bits = t.view(torch.int32).reshape(-1)
    bits[len(bits) // 2] ^= 1  # the lowest mantissa bit of one value: a change of ~1e-7, relative
    return t


def _scale(t: torch.Tensor) -> torch.Tensor:
    return t + 0.5  # exp(0.5) = 1.65 times the temperature


@pytest.fixture
def export_copy(tmp_path, finished_run) -> Path:
    out = tmp_path / "export"
    assert main(["export", "--model", str(finished_run), "--out", str(out), "--no-hf"]) == 0
    return out


def _verify(path: Path, capsys) -> tuple[int, dict, str]:
    capsys.readouterr()
    code = main(["verify", str(path), "--json"])
    out = capsys.readouterr()
    return code, json.loads(out.out), out.err


@pytest.mark.parametrize("key, group, change", [("text_head.weight", "text_head", _flip_bit),
                                                ("logit_scale", "logit_scale", _scale),
                                                ("image_head.bias", "image_head", _flip_bit),
                                                ("logit_bias", "logit_bias", _scale)])
@pytest.mark.parametrize("where", ["run", "export"])
def test_a_changed_weight_group_is_refused_naming_it(where, key, group, change, run_copy, fault_data, request, capsys):
    folder = run_copy if where == "run" else request.getfixturevalue("export_copy")
    before = load_run(folder)[0].fingerprints()
    _edit(folder / "model.safetensors", key, change)

    with pytest.raises(WeightsError, match=group) as e:
        load_run(folder)
    assert f"weights of {group} are not the ones recorded" in str(e.value)
    with pytest.raises(WeightsError, match=group):
        littune.load(folder)
    capsys.readouterr()
    image = next((fault_data["root"] / "data" / "images").glob("*.jpg"))
    assert main(["classify", "--model", str(folder), "--labels", "red,blue", str(image)]) == 2
    err = capsys.readouterr().err
    assert group in err and "Traceback" not in err and len(err.strip().splitlines()) <= 2

    code, report, err = _verify(folder, capsys)
    assert code == 2 and not report["ok"] and f"{group}" in err
    assert [g for g, r in report["groups"].items() if not r["ok"]] == [group, "model"]
    assert report["groups"][group]["recorded"] == before[group] != report["groups"][group]["computed"]
    assert all(report["groups"][g]["ok"] for g in GROUPS if g not in (group, "model"))


def test_a_changed_text_tower_in_a_run_is_refused(run_copy):
    """A run's trained text tower was never checked before (only the locked towers were)."""
    _edit(run_copy / "model.safetensors", "text.token_emb.weight", _flip_bit)
    with pytest.raises(WeightsError, match=r"weights of text are not the ones recorded"):
        load_run(run_copy)


def test_a_changed_checkpoint_is_refused(run_copy, capsys):
    ckpt = list_checkpoints(run_copy)[-1]
    _edit(ckpt / "model.safetensors", "text_head.weight", _flip_bit)
    with pytest.raises(WeightsError, match="text_head"):
        load_run(run_copy, checkpoint=ckpt)
    code, report, _ = _verify(ckpt, capsys)
    assert code == 2 and report["kind"] == "checkpoint" and not report["groups"]["text_head"]["ok"]


def test_verify_prints_every_group(finished_run, export_copy, capsys):
    for folder, kind in ((finished_run, "run"), (export_copy, "export"), (list_checkpoints(finished_run)[0],
                                                                         "checkpoint")):
        code, report, err = _verify(folder, capsys)
        assert code == 0 and report["ok"] and report["kind"] == kind and not err
        assert list(report["groups"]) == GROUPS
        assert all(r["recorded"] == r["computed"] for r in report["groups"].values())
    capsys.readouterr()
    assert main(["verify", str(finished_run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("(run)") and [line.split()[0] for line in lines[1:]] == GROUPS
    assert all(line.split()[-1] == "ok" for line in lines[1:])


def test_a_run_refuses_a_locked_tower_whose_weights_differ(run_copy, other_tower_weights, tower_weights, capsys):
    """The locked image tower is rebuilt from its source: other weights there are refused, by name."""
    cfg = run_copy / "config.yaml"
    cfg.write_text(cfg.read_text().replace(str(tower_weights), str(other_tower_weights)))
    with pytest.raises(WeightsError, match=r"the locked image tower's weights differ from training"):
        load_run(run_copy)
    code, report, _ = _verify(run_copy, capsys)
    assert code == 2 and not report["groups"]["image"]["ok"] and report["groups"]["text"]["ok"]


def test_truncated_or_missing_files_are_named(run_copy, export_copy, finished_run, capsys):
    weights = run_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(WeightsError, match="damaged or truncated"):
        load_run(run_copy)
    capsys.readouterr()
    assert main(["verify", str(run_copy)]) == 2
    err = capsys.readouterr().err
    assert str(weights) in err and "damaged or truncated" in err and "Traceback" not in err

    (export_copy / "export.json").write_text("{not json")
    with pytest.raises(WeightsError, match="export.json: not valid JSON"):
        load_run(export_copy)

    shutil.copy(finished_run / "model.safetensors", weights)  # whole again
    (run_copy / "model_info.json").unlink()
    with pytest.raises(WeightsError, match="model_info.json is missing"):
        load_run(run_copy)


def test_a_warm_start_refuses_a_source_whose_copied_head_changed(run_copy, fault_data, tower_weights, tokenizer_file,
                                                                tmp_path):
    from littune.config import ConfigError
    from littune.train import Trainer, load_config

    from .conftest import run_overrides

    def warm(run: Path) -> Trainer:
        return Trainer(load_config(None, run_overrides(run, fault_data, tower_weights, tokenizer_file,
                                                       f"train.init_from={run_copy}", f"train.init_parts=[{','.join(parts)}]")))

    parts = ["text", "image_head", "text_head", "logit_scale", "logit_bias"]  # its text tower trained too
    assert set(warm(tmp_path / "ok").warm_started) == set(parts)
    _edit(run_copy / "model.safetensors", "text_head.weight", _flip_bit)  # one bit of a copied head
    with pytest.raises(ConfigError, match=r"weights of text_head differ from the fingerprints"):
        warm(tmp_path / "refused")
