"""One error boundary: every expected failure exits with code 2 and one or two lines naming the file or
key and the fix; ``--debug`` or LITTUNE_DEBUG=1 adds the traceback; a bug still shows its traceback."""
from __future__ import annotations

import subprocess
import sys

import pytest

import littune.train.loop as loop
from littune.cli import main
from littune.runs import list_checkpoints

from tests.cache.tiny_data import cli_env

from .conftest import run_overrides


def _fails(argv: list[str], capsys, *expected: str, lines: int = 2) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith(f"littune {argv[0]}: error: "), err
    assert 1 <= len(err.strip().splitlines()) <= lines, err
    for text in expected:
        assert text in err, err
    return err


@pytest.mark.parametrize("override, key", [
    ("model.init_temperature=0", "model.init_temperature=0.0"), ("model.init_temperature=-3", "model.init_temperature"),
    ("optim.lr=nan", "optim.lr=nan"), ("optim.lr=inf", "optim.lr=inf"), ("optim.lr=0", "optim.lr=0.0"),
    ("optim.grad_clip=-1", "optim.grad_clip=-1.0"), ("optim.weight_decay=-0.1", "optim.weight_decay"),
    ("optim.beta1=1.0", "optim.beta1"), ("optim.beta2=-0.5", "optim.beta2"), ("optim.warmup_steps=-1", "optim.warmup_steps"),
    ("optim.eps=0", "optim.eps"), ("model.text.dropout=1.5", "model.text.dropout"),
    ("model.text.head_dropout=-0.1", "model.text.head_dropout"), ("train.log_every=0", "train.log_every"),
    ("train.collective_timeout_s=0", "train.collective_timeout_s"), ("model.text.lr_mult=nan", "model.text.lr_mult"),
])
def test_a_bad_config_value_names_its_key(override, key, tmp_path, fault_data, tower_weights, tokenizer_file, capsys):
    argv = ["train", *run_overrides(tmp_path / "run", fault_data, tower_weights, tokenizer_file), override]
    _fails(argv, capsys, key, "finite number", lines=1)
    assert not (tmp_path / "run").exists()  # refused before anything was made


def test_damaged_files_of_a_run_are_named(run_copy, fault_data, tmp_path, capsys):
    image = str(next((fault_data["root"] / "data" / "images").glob("*.jpg")))
    classify = ["classify", "--model", str(run_copy), "--labels", "red,blue", image]
    weights = run_copy / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[:100])  # truncated
    _fails(classify, capsys, str(weights), "damaged or truncated")
    _fails(["eval", "retrieval", "--model", str(run_copy), "--data", str(fault_data["csv"]),
            "--cache", str(tmp_path / "c"), "--no-progress"], capsys, str(weights), "damaged or truncated")
    weights.write_bytes(good)

    (run_copy / "config.yaml").write_text("model: {text: [unclosed\n")  # corrupt config
    _fails(classify, capsys, str(run_copy / "config.yaml"), "not valid YAML")
    (run_copy / "config.yaml").write_text("optim:\n  lr: fast\n")  # a wrong type
    _fails(classify, capsys, "optim.lr")


def test_unreachable_files_are_named(tmp_path, capsys):
    _fails(["verify", str(tmp_path / "nowhere")], capsys, "not found", str(tmp_path / "nowhere"))
    (tmp_path / "file").write_text("x")
    _fails(["classify", "--model", str(tmp_path / "file"), "--labels", "a,b", str(tmp_path / "file")], capsys,
           str(tmp_path / "file"))
    _fails(["train", "--config", str(tmp_path / "none.yaml")], capsys, "config file not found")


def test_a_damaged_checkpoint_state_on_resume_is_named(run_copy, fault_data, tower_weights, tokenizer_file, capsys):
    state = list_checkpoints(run_copy)[-1] / "state.pt"
    state.write_bytes(state.read_bytes()[:1000])
    _fails(["train", *run_overrides(run_copy, fault_data, tower_weights, tokenizer_file), "--resume"], capsys,
           str(state), "damaged or truncated", "checkpoint before it")


def test_a_non_finite_loss_stops_with_a_message(tmp_path, monkeypatch, fault_data, tower_weights, tokenizer_file,
                                                capsys):
    real = loop.create_loss

    def poisoned(*a, **k):
        fn = real(*a, **k)

        def loss(*args):
            out = fn(*args)
            return out * float("nan") if poisoned.calls == 4 else out
        loss.uses_bias = fn.uses_bias
        return loss

    poisoned.calls = 0
    real_step = loop.Trainer.train_step

    def counting(self, batch):
        poisoned.calls += 1
        return real_step(self, batch)

    monkeypatch.setattr(loop, "create_loss", poisoned)
    monkeypatch.setattr(loop.Trainer, "train_step", counting)
    run = tmp_path / "run"
    _fails(["train", *run_overrides(run, fault_data, tower_weights, tokenizer_file)], capsys,
           "loss became nan at step 3", str(run / "checkpoints" / "step_0000003"), "--resume", lines=1)


def test_debug_shows_the_traceback(tmp_path, capsys):
    capsys.readouterr()
    for argv in (["--debug", "verify", str(tmp_path / "nowhere")], ["verify", str(tmp_path / "nowhere"), "--debug"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err and "littune verify: error: model directory not found" in err
    env = {**cli_env(), "LITTUNE_DEBUG": "1"}
    r = subprocess.run([sys.executable, "-m", "littune", "verify", str(tmp_path / "nowhere")], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" in r.stderr and "model directory not found" in r.stderr
    r = subprocess.run([sys.executable, "-m", "littune", "verify", str(tmp_path / "nowhere")], env=cli_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_a_bug_is_not_dressed_up_as_an_expected_error(monkeypatch, tmp_path):
    """An unexpected exception type is littune's bug: it propagates (Python prints the traceback)."""
    import littune.runs.verify as verify

    def broken(path):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(verify, "verify_model", broken)
    with pytest.raises(ZeroDivisionError):
        main(["verify", str(tmp_path)])
