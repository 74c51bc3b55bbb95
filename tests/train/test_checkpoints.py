"""runs/checkpoints.py piece by piece, fast (the mutation run of checkpoints.py reads it per mutant):
what state.pt holds, how many checkpoints are kept, a re-written step, a write that fails (its message
and what is left on disk), a damaged or foreign state.pt, a checkpoint written on a GPU, and resuming
with each process's own random state (a stand-in CUDA generator: this machine has none).
"""
from __future__ import annotations

import errno
import random

import numpy as np
import pytest
import torch
import torch.serialization

import littune.runs.checkpoints as checkpoints
from littune.heads import make_head
from littune.model import LiTModel
from littune.runs.checkpoints import (CheckpointError, WorldSizeChanged, latest_checkpoint, list_checkpoints,
                                      load_checkpoint, read_state, rng_state, save_checkpoint)
from littune.towers import create_image_tower, create_text_tower


@pytest.fixture(scope="module")
def model() -> LiTModel:
    torch.manual_seed(0)
    image = create_image_tower("timm:test_efficientnet", pretrained=False, lock="L")
    text = create_text_tower("scratch", lock="u", width=32, depth=1, heads=2, context_length=16, dropout=0.0)
    return LiTModel(image, text, image_head=make_head("linear", image.embed_dim, 16), embed_dim=16)


def _optim(model: LiTModel):
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1 + step))


def _save(run, step, model, **kw):
    opt, sched = _optim(model)
    return save_checkpoint(run, step, model, opt, sched, {"epoch": 3}, **kw)


def _steps(run) -> list[str]:
    return [p.name for p in list_checkpoints(run)]


def _draws() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def _rank_states(n: int) -> list[dict]:
    """The random state of each of n processes, each seeded differently."""
    states = []
    for rank in range(n):
        torch.manual_seed(100 + rank), np.random.seed(100 + rank), random.seed(100 + rank)
        states.append(rng_state())
    return states


def _draws_after(states: dict) -> tuple:
    checkpoints.set_rng_state(states)
    return _draws()


def _state_file(ckpt, **change) -> None:
    state = read_state(ckpt)
    state.update(change)
    for key in [k for k, v in change.items() if v is None]:
        del state[key]
    torch.save(state, ckpt / "state.pt")


# What a checkpoint holds -----------------------------------------------------------------------

def test_a_checkpoint_holds_the_step_the_training_state_and_every_records_file(model, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("train: {steps: 9}\n")
    (run / "cache_manifest.json").write_text('{"source": "here"}')
    torch.manual_seed(7)
    ckpt = _save(run, 5, model)
    assert ckpt == run / "checkpoints" / "step_0000005"
    assert sorted(p.name for p in ckpt.iterdir()) == ["cache_manifest.json", "config.yaml", "model.safetensors",
                                                       "model_info.json", "state.pt"]
    assert (ckpt / "config.yaml").read_text() == "train: {steps: 9}\n"
    state = read_state(ckpt)
    assert (state["step"], state["epoch"], state["world_size"]) == (5, 3, 1)  # `extra` rides along
    assert state["scheduler"]["base_lrs"] == [0.5] and state["optimizer"]["param_groups"][0]["lr"] == 0.5
    assert len(state["rng_ranks"]) == 1 and torch.equal(state["rng_ranks"][0]["torch"], torch.get_rng_state())
    assert state["rng"] is not None and torch.equal(state["rng"]["torch"], state["rng_ranks"][0]["torch"])
    assert "cuda" not in state["rng"]  # no GPU here


def test_a_run_of_several_processes_records_each_ones_random_state(model, tmp_path):
    ranks = _rank_states(3)
    state = read_state(_save(tmp_path, 4, model, rng_ranks=ranks))
    assert state["world_size"] == 3 and len(state["rng_ranks"]) == 3
    for saved, own in zip(state["rng_ranks"], ranks):
        assert torch.equal(saved["torch"], own["torch"])
    assert torch.equal(state["rng"]["torch"], ranks[0]["torch"])  # what versions before rng_ranks read


# How many are kept -------------------------------------------------------------------------------

def test_the_two_newest_checkpoints_are_kept_by_default(model, tmp_path):
    for step in (1, 2, 3, 10):
        _save(tmp_path, step, model)
    assert _steps(tmp_path) == ["step_0000003", "step_0000010"]  # by step, not by the name's digits alone
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "step_0000010"


@pytest.mark.parametrize("keep, left", [(1, ["step_0000003"]), (3, ["step_0000001", "step_0000002", "step_0000003"])])
def test_keep_n_keeps_the_n_newest(keep, left, model, tmp_path):
    for step in (1, 2, 3):
        _save(tmp_path, step, model, keep=keep)
    assert _steps(tmp_path) == left


@pytest.mark.parametrize("keep", [0, -1])
def test_keep_0_or_less_keeps_every_checkpoint(keep, model, tmp_path):
    for step in (1, 2, 3):
        _save(tmp_path, step, model, keep=keep)
    assert _steps(tmp_path) == ["step_0000001", "step_0000002", "step_0000003"]
    assert latest_checkpoint(tmp_path).name == "step_0000003"  # the newest of three, not the second


def test_latest_of_none(tmp_path):
    assert latest_checkpoint(tmp_path) is None and list_checkpoints(tmp_path) == []
    (tmp_path / "checkpoints" / "step_0000004").mkdir(parents=True)  # a folder without state.pt: not one
    assert latest_checkpoint(tmp_path) is None


def test_an_old_checkpoint_that_cannot_be_removed_does_not_fail_the_new_one(model, tmp_path):
    """A stale checkpoint that is a link (kept on another disk, say): rmtree refuses it, the save stands."""
    elsewhere = tmp_path / "elsewhere"
    _save(elsewhere, 1, model)
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "step_0000001").symlink_to(elsewhere / "checkpoints" / "step_0000001")
    _save(tmp_path / "run", 2, model, keep=1)
    assert _steps(tmp_path / "run") == ["step_0000001", "step_0000002"]
    assert _steps(elsewhere) == ["step_0000001"]


# Leftovers of a killed write, and the same step written again ------------------------------------

def test_a_leftover_temporary_folder_is_not_carried_into_the_checkpoint(model, tmp_path):
    tmp = tmp_path / "checkpoints" / ".tmp_step_0000005"
    tmp.mkdir(parents=True)
    (tmp / "half_written.bin").write_bytes(b"\0" * 10)
    ckpt = _save(tmp_path, 5, model)
    assert not (ckpt / "half_written.bin").exists() and not tmp.exists()


def test_the_same_step_written_again_replaces_it_and_leaves_nothing_behind(model, tmp_path):
    first = _save(tmp_path, 6, model)
    (first / "marker").write_text("first write")
    old = tmp_path / "checkpoints" / ".old_step_0000006"
    old.mkdir()
    (old / "state.pt").write_bytes(b"left by a swap that was killed")
    again = _save(tmp_path, 6, model)
    assert again == first and not (again / "marker").exists() and read_state(again)["step"] == 6
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_0000006"]


# A write that fails ------------------------------------------------------------------------------

def _failing_save(monkeypatch, error: BaseException) -> None:
    def save(obj, f):
        f.write(b"partial")
        raise error
    monkeypatch.setattr(checkpoints.torch, "save", save)


def test_a_failed_write_keeps_the_previous_checkpoint_and_says_so(model, tmp_path, monkeypatch):
    before = _save(tmp_path, 3, model)
    disk_full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x" / "state.pt"))
    monkeypatch.setattr(checkpoints.torch, "save", _raises_from(disk_full))
    with pytest.raises(CheckpointError) as caught:
        _save(tmp_path, 6, model)
    msg = str(caught.value)
    final = tmp_path / "checkpoints" / "step_0000006"
    assert msg == (f"could not write checkpoint {final} (No space left on device: {tmp_path / 'x' / 'state.pt'}); "
                   f"nothing of it was kept. The previous checkpoint {before} is intact: free space (or fix the "
                   "folder's permissions) and continue with --resume")
    assert caught.value.__cause__ is not None
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_0000003"]  # no .tmp_ folder
    assert read_state(before)["step"] == 3


def _raises_from(cause: OSError):
    """torch.save as it fails on a full disk: its own RuntimeError, raised from the OS error."""
    def failing(obj, f):
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:603] unexpected pos 128 vs 0") from cause
    return failing


def test_a_failed_first_write_says_to_start_again(model, tmp_path, monkeypatch):
    _failing_save(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))  # no file name
    with pytest.raises(CheckpointError) as caught:
        _save(tmp_path, 2, model)
    assert str(caught.value) == (
        f"could not write checkpoint {tmp_path / 'checkpoints' / 'step_0000002'} (No space left on device); "
        "nothing of it was kept. No earlier checkpoint exists: free space (or fix the folder's permissions) "
        "and start again")
    assert list((tmp_path / "checkpoints").iterdir()) == []


def test_a_folder_that_cannot_be_created_is_a_checkpoint_error(model, tmp_path):
    """The temporary folder is never made (here: `checkpoints` is a file), so there is none to remove."""
    (tmp_path / "checkpoints").write_text("not a folder")
    with pytest.raises(CheckpointError) as caught:
        _save(tmp_path, 1, model)
    assert f"(Not a directory: {tmp_path / 'checkpoints' / '.tmp_step_0000001'})" in str(caught.value)
    assert "No earlier checkpoint exists" in str(caught.value)


@pytest.mark.parametrize("error, reason", [
    (RuntimeError("disk quota exceeded\nwhile writing data/0"), "disk quota exceeded"),  # the first line
    (RuntimeError(""), "RuntimeError"),  # no message: the error's kind
    (OSError("a wrapper without an errno"), "a wrapper without an errno"),
    (ValueError("x" * 400), "x" * 300),  # at most 300 characters
    (ValueError("y" * 300), "y" * 300),
])
def test_the_reason_of_a_failed_write(error, reason, model, tmp_path, monkeypatch):
    _failing_save(monkeypatch, error)
    with pytest.raises(CheckpointError) as caught:
        _save(tmp_path, 1, model)
    assert f"step_0000001 ({reason}); nothing of it was kept" in str(caught.value)


def test_the_reason_under_a_wrapper_is_found_in_its_context(model, tmp_path, monkeypatch):
    def save(obj, f):
        try:
            raise OSError(errno.EROFS, "Read-only file system", "/mnt/ro/run")
        except OSError:
            raise RuntimeError("File state.pt cannot be opened.")  # implicit chaining: __context__ only
    monkeypatch.setattr(checkpoints.torch, "save", save)
    with pytest.raises(CheckpointError, match=r"step_0000001 \(Read-only file system: /mnt/ro/run\); nothing"):
        _save(tmp_path, 1, model)


# Reading state.pt --------------------------------------------------------------------------------

def test_a_truncated_state_is_named_with_the_way_back(model, tmp_path):
    ckpt = _save(tmp_path, 3, model)
    data = (ckpt / "state.pt").read_bytes()
    (ckpt / "state.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as caught:
        read_state(ckpt)
    msg = str(caught.value)
    assert msg.startswith(f"{ckpt / 'state.pt'} is damaged or truncated (")
    assert msg.endswith(f"); move {ckpt} away to resume from the checkpoint before it")
    inner = msg[len(f"{ckpt / 'state.pt'} is damaged or truncated ("):-len(f"); move {ckpt} away to resume "
                                                                              "from the checkpoint before it")]
    assert inner and "None" not in inner  # torch's own reason (it varies with where the file ends)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize("data, reason", [(b"", "Ran out of input"), (b"not a checkpoint", "invalid load key, 'n'.")])
def test_an_empty_or_foreign_state_file_is_named_with_torchs_reason(data, reason, tmp_path):
    (tmp_path / "state.pt").write_bytes(data)
    with pytest.raises(CheckpointError) as caught:
        read_state(tmp_path)
    assert str(caught.value) == (f"{tmp_path / 'state.pt'} is damaged or truncated ({reason}); move {tmp_path} "
                                 "away to resume from the checkpoint before it")


@pytest.mark.parametrize("content", [{"optimizer": {}}, [1, 2, 3]])
def test_a_state_that_is_not_a_checkpoint_state_is_refused(content, tmp_path):
    torch.save(content, tmp_path / "state.pt")
    with pytest.raises(CheckpointError) as caught:
        read_state(tmp_path)
    assert str(caught.value) == f"{tmp_path / 'state.pt'} is not a littune checkpoint state"


def test_a_checkpoint_written_on_a_gpu_is_read_on_a_cpu(model, tmp_path, monkeypatch):
    ckpt = _save(tmp_path, 3, model)
    state = read_state(ckpt)
    state["momentum"] = torch.ones(4)
    with monkeypatch.context() as m:  # torch.save records each tensor's device: say it was cuda:0
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(state, ckpt / "state.pt")
    assert b"cuda:0" in (ckpt / "state.pt").read_bytes()
    loaded = read_state(ckpt)
    assert loaded["momentum"].device.type == "cpu" and torch.equal(loaded["momentum"], torch.ones(4))


# Resuming -----------------------------------------------------------------------------------------

def test_a_one_process_checkpoint_resumes_weights_schedule_and_random_state(model, tmp_path):
    torch.manual_seed(11), np.random.seed(11), random.seed(11)
    ckpt = _save(tmp_path, 4, model)
    expected = _draws()  # what the run would have drawn next
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.logit_scale.add_(1.0)
    opt, sched = _optim(model)
    opt.step(), sched.step(), sched.step()
    state = load_checkpoint(ckpt, model, opt, sched)  # rank 0 of 1 by default
    assert state["step"] == 4 and sched.last_epoch == 0 and opt.param_groups[0]["lr"] == 0.5
    assert torch.equal(model.logit_scale, weights["logit_scale"])
    assert _draws() == expected


def test_each_process_resumes_its_own_random_state(model, tmp_path):
    ranks = _rank_states(2)
    ckpt = _save(tmp_path, 4, model, rng_ranks=ranks)
    own = [_draws_after(s) for s in ranks]
    assert own[0] != own[1]
    for rank in (0, 1):
        torch.manual_seed(999)
        load_checkpoint(ckpt, model, *_optim(model), rank=rank, world=2)
        assert _draws() == own[rank]


def test_a_checkpoint_of_before_rng_ranks_gives_every_rank_rank_0s_state(model, tmp_path):
    ranks = _rank_states(2)
    ckpt = _save(tmp_path, 4, model, rng_ranks=ranks)
    _state_file(ckpt, rng_ranks=None, world_size=None)  # as older versions wrote it
    expected = _draws_after(ranks[0])
    for rank in (0, 1):
        load_checkpoint(ckpt, model, *_optim(model), rank=rank, world=2)  # no world size recorded: allowed
        assert _draws() == expected


@pytest.mark.parametrize("saved, world, rank", [(2, 1, 0), (1, 3, 2)])
def test_another_number_of_processes_is_refused_naming_both(saved, world, rank, model, tmp_path):
    ckpt = _save(tmp_path, 4, model, rng_ranks=_rank_states(saved))
    with pytest.raises(WorldSizeChanged) as caught:
        load_checkpoint(ckpt, model, *_optim(model), rank=rank, world=world)
    assert str(caught.value) == (
        f"cannot resume from {ckpt}: it was written by a run of {saved} process(es), this run has {world} "
        f"(this is rank {rank}); each process restores its own random state and reads its own share of every "
        f"batch: resume with {saved} process(es) (torchrun --nproc_per_node / --nnodes), or start a new run "
        "in another train.out_dir")


# On a GPU (a stand-in CUDA generator) --------------------------------------------------------------

class _FakeCuda:
    def __init__(self, monkeypatch, initialized: bool = True, available: bool = True):
        self.state = [torch.tensor([1, 2, 3], dtype=torch.uint8), torch.tensor([4, 5, 6], dtype=torch.uint8)]
        self.got, self.put = 0, []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
        monkeypatch.setattr(torch.cuda, "is_initialized", lambda: initialized)
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", self.get)
        monkeypatch.setattr(torch.cuda, "set_rng_state_all", self.put.append)

    def get(self):
        self.got += 1
        return self.state


def test_a_gpu_runs_cuda_random_state_is_saved_and_restored(model, tmp_path, monkeypatch):
    cuda = _FakeCuda(monkeypatch)
    ckpt = _save(tmp_path, 4, model)
    assert [t.tolist() for t in read_state(ckpt)["rng_ranks"][0]["cuda"]] == [[1, 2, 3], [4, 5, 6]]
    load_checkpoint(ckpt, model, *_optim(model))
    assert len(cuda.put) == 1 and [t.tolist() for t in cuda.put[0]] == [[1, 2, 3], [4, 5, 6]]


def test_a_gpu_machine_that_has_not_used_cuda_neither_starts_it_nor_records_it(model, tmp_path, monkeypatch):
    cuda = _FakeCuda(monkeypatch, initialized=False)
    ckpt = _save(tmp_path, 4, model)
    assert cuda.got == 0 and "cuda" not in read_state(ckpt)["rng"]
    load_checkpoint(ckpt, model, *_optim(model))  # nothing recorded: nothing to set
    assert cuda.put == []


def test_a_gpu_checkpoint_resumed_without_a_gpu_skips_the_cuda_state(model, tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        _FakeCuda(m)
        ckpt = _save(tmp_path, 4, model)
    cuda = _FakeCuda(monkeypatch, available=False, initialized=False)
    load_checkpoint(ckpt, model, *_optim(model))
    assert cuda.put == []
