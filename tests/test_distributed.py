"""littune.distributed in one process: the identities without a process group, the one-process gloo
group, launching (init_from_env, the per-attempt store), devices and precision, and peer failures.
Several processes: tests/distributed/test_gloo_collectives.py."""
from __future__ import annotations

import datetime

import pytest
import torch
import torch.distributed as dist

import littune.distributed as D

SIGNS_OF_A_LOST_PEER = [
    "[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:598] Connection closed by peer [127.0.0.1]:4242",
    "[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection reset by peer",
    "NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled system error",
    "Broken pipe", "Timed out waiting 5000ms for recv operation", "Socket Timeout", "connection closed",
]


@pytest.fixture
def one_process_group():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.fixture
def no_launcher(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_USE_AGENT_STORE",
                 "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)


def test_without_a_process_group_every_helper_is_the_identity():
    x = torch.randn(3, 4)
    assert (D.is_distributed(), D.world_size(), D.rank(), D.is_main()) == (False, 1, 0, True)
    assert D.batch_sizes(3) == [3] and D.local_offset([3]) == 0
    assert D.gather_with_grad(x) is x and D.gather_with_grad(x, [3]) is x
    assert D.mean_across(x) is x
    assert D.gather_objects({"a": 1}) == [{"a": 1}]
    assert D.barrier() is None


def test_one_process_group_gathers_itself(one_process_group):
    x = torch.randn(3, 4, requires_grad=True)
    assert (D.is_distributed(), D.world_size(), D.rank(), D.is_main()) == (True, 1, 0, True)
    assert D.batch_sizes(3) == [3]
    assert D.gather_with_grad(x) is x and D.gather_with_grad(x, [3]) is x
    mean = D.mean_across(x)
    assert mean is not x and not mean.requires_grad and torch.equal(mean, x.detach())
    assert D.gather_objects(("a", 1)) == [("a", 1)]
    D.barrier()


def test_peer_failures_are_told_from_bugs(one_process_group):
    for message in SIGNS_OF_A_LOST_PEER:
        assert D.is_peer_failure(RuntimeError(message)), message
    assert D.is_peer_failure(dist.DistError("store timeout"))
    assert not D.is_peer_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x8 and 16x8)"))
    assert not D.is_peer_failure(ValueError("gloo"))  # not a failed collective, whatever it says


def test_outside_a_process_group_no_runtime_error_is_a_lost_peer():
    assert not D.is_peer_failure(RuntimeError(SIGNS_OF_A_LOST_PEER[0]))
    assert not D.is_peer_failure(ValueError("Connection reset"))
    assert D.is_peer_failure(dist.DistError("store timeout"))


def test_first_line_is_the_gist_of_a_gloo_error():
    e = RuntimeError("[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:545] Read error [127.0.0.1]:41234: "
                     "Connection reset by peer. This is typically caused by a remote worker crashing.\nmore")
    assert D.first_line(e) == "Read error [127.0.0.1]:41234: Connection reset by peer"
    assert D.first_line(RuntimeError("  Timed out after 5 s. Check the peers\n")) == "Timed out after 5 s"
    assert D.first_line(RuntimeError("a [b] c")) == "a [b] c"  # only a leading [source] goes
    assert D.first_line(TimeoutError("")) == "TimeoutError"
    assert D.first_line(RuntimeError(" \n ")) == "RuntimeError"
    assert D.first_line(RuntimeError("x" * 300)) == "x" * 200


def test_elastic_restart_reads_torchrun(monkeypatch, no_launcher):
    assert D.elastic_restart() == (0, None)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "2")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job7")
    assert D.elastic_restart() == (2, "job7")


def test_rank_seed_keeps_rank_0_and_draws_the_others():
    assert D.rank_seed(7, 0) == 7
    seeds = [D.rank_seed(7, r) for r in range(1, 4)]
    assert len(set(seeds + [7])) == 4 and seeds == [D.rank_seed(7, r) for r in range(1, 4)]
    assert D.rank_seed(8, 1) != seeds[0]


def test_resolve_device(monkeypatch, no_launcher):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert D.resolve_device() == D.resolve_device("auto") == D.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"^device 'cuda:1' asked for, but CUDA is not available here$"):
        D.resolve_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert D.resolve_device() == torch.device("cuda:0")
    monkeypatch.setenv("LOCAL_RANK", "2")  # torchrun: this process's GPU
    assert D.resolve_device() == torch.device("cuda:2")
    assert D.resolve_device("cuda:1") == torch.device("cuda:1") and D.resolve_device("cpu") == torch.device("cpu")


def test_native_bf16_asks_the_gpu_or_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda: False, raising=False)
    cpu = torch.device("cpu")
    assert D.native_bf16(torch.device("cuda")) and not D.native_bf16(cpu)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert D.native_bf16(cpu)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert D.native_bf16(cpu)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")  # an older torch: that check is skipped
    assert D.native_bf16(cpu)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert not D.native_bf16(torch.device("cuda"))
    monkeypatch.delattr(torch, "cpu")
    assert not D.native_bf16(cpu)


def test_resolve_precision(monkeypatch):
    monkeypatch.setattr(D, "native_bf16", lambda device: device.type == "cuda")
    assert D.resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert D.resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert D.resolve_precision("fp32", torch.device("cuda")) == "fp32"
    assert D.resolve_precision("bf16", torch.device("cpu")) == "bf16"


@pytest.fixture
def inits(monkeypatch):
    """What init_from_env asks of torch: (backend, keyword arguments) per call, and the CUDA device set."""
    calls, devices = [], []
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: calls.append((backend, kw)))
    monkeypatch.setattr(torch.cuda, "set_device", devices.append)
    return calls, devices


def test_init_from_env_only_under_torchrun(monkeypatch, no_launcher, inits):
    calls, _ = inits
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert D.init_from_env() is False and calls == []
    monkeypatch.setenv("RANK", "0")
    assert D.init_from_env() is True
    assert D.init_from_env(timeout_s=7) is True
    assert calls == [("gloo", {}), ("gloo", {"timeout": datetime.timedelta(seconds=7)})]
    monkeypatch.setattr(D, "is_distributed", lambda: True)  # already initialised: nothing more
    assert D.init_from_env() is True and len(calls) == 2


def test_init_from_env_with_cuda_takes_the_local_gpu(monkeypatch, no_launcher, inits):
    calls, devices = inits
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("RANK", "1")
    D.init_from_env()
    monkeypatch.setenv("LOCAL_RANK", "1")
    D.init_from_env(timeout_s=3)
    assert devices == [0, 1]
    assert calls == [("cpu:gloo,cuda:nccl", {}), ("cpu:gloo,cuda:nccl", {"timeout": datetime.timedelta(seconds=3)})]


def test_each_restart_attempt_gets_its_own_key_space(monkeypatch, no_launcher, inits):
    calls, _ = inits
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    agent = dist.TCPStore("127.0.0.1", 0, 1, is_master=True, wait_for_workers=False)
    launcher = {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(agent.port),
                "TORCHELASTIC_RESTART_COUNT": "3", "TORCHELASTIC_RUN_ID": "job7"}
    for k, v in launcher.items():
        monkeypatch.setenv(k, v)
    assert D._attempt_store(None) == {}  # torchrun without its agent's store: env:// as usual
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "False")
    assert D._attempt_store(None) == {}
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    D.init_from_env(timeout_s=9)
    (backend, kw), = calls
    assert backend == "gloo" and set(kw) == {"store", "rank", "world_size", "timeout"}
    assert (kw["rank"], kw["world_size"], kw["timeout"]) == (1, 2, datetime.timedelta(seconds=9))
    assert kw["store"].underlying_store.timeout == datetime.timedelta(seconds=9)
    kw["store"].set("k", "attempt 3")
    assert agent.get("/littune/job7/attempt_3/k") == b"attempt 3"
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT")
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    first = D._attempt_store(None)
    assert first["store"].underlying_store.timeout == dist.constants.default_pg_timeout
    first["store"].set("k", "first")
    assert agent.get("/littune/job/attempt_0/k") == b"first"
    monkeypatch.delenv("MASTER_ADDR")
    assert D._attempt_store(None) == {}
