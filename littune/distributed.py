"""Cross-process helpers: gather embeddings with autograd so each example sees global negatives.

Single process: every function is the identity. Under ``torchrun`` the gather's backward sums
the gradients that every process computed for this rank's rows; DDP then averages parameter
gradients over processes, which gives exactly the single-process gradient of the global-batch
loss, with or without the local loss (tested with 2 real processes, every parameter compared).
Processes may hold different numbers of rows (a live image that failed to decode): the counts are
gathered first (``batch_sizes``), the rows padded to the largest and the padding dropped.
"""
from __future__ import annotations

import datetime
import os
import re

import numpy as np
import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main() -> bool:
    return rank() == 0


def batch_sizes(n: int, device: torch.device | str = "cpu") -> list[int]:
    """Every process's local batch size, in rank order (one small all_gather).

    Batches may differ: a live image that fails to decode leaves its process one row short, so
    the global batch is never assumed to be ``world * n``."""
    if not is_distributed() or world_size() == 1:
        return [n]
    # NCCL gathers only CUDA tensors: the count travels on the device the rows live on.
    mine = torch.tensor([n], dtype=torch.int64, device=device)
    parts = [torch.empty_like(mine) for _ in range(world_size())]
    dist.all_gather(parts, mine)
    return [int(p) for p in torch.cat(parts).tolist()]


class _GatherWithGrad(torch.autograd.Function):
    """all_gather of rows padded to the largest batch, the padding dropped; backward sums every
    process's gradient of the gathered rows and keeps this rank's own."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        n, most = x.shape[0], max(sizes)
        padded = x.new_zeros((most, *x.shape[1:]))  # (max b, E): all_gather needs equal shapes
        padded[:n] = x
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        ctx.start, ctx.n = sum(sizes[:dist.get_rank()]), n
        return torch.cat([p[:b] for p, b in zip(parts, sizes)], dim=0)  # (sum b, E)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()  # (sum b, E): the same shape on every process
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # all_reduce: supported by gloo and NCCL alike
        return grad[ctx.start:ctx.start + ctx.n], None


def gather_with_grad(x: torch.Tensor, sizes: list[int] | None = None) -> torch.Tensor:
    """(b, E) local rows -> (sum of b, E) global rows, rank order; gradients flow back to each rank.
    ``sizes``: every rank's b (``batch_sizes``), gathered here when not given."""
    if not is_distributed() or world_size() == 1:
        return x
    return _GatherWithGrad.apply(x, sizes if sizes is not None else batch_sizes(x.shape[0], x.device))


def ring_shift(x: torch.Tensor, recv_rows: int) -> torch.Tensor:
    """Point-to-point ring step: send ``x`` (b, ...) to the next rank and receive the previous rank's
    (recv_rows, ...) tensor. Every process calls it at once; ranks may send different row counts."""
    w, r = world_size(), rank()
    buf = x.new_empty((recv_rows, *x.shape[1:]))
    ops = [dist.P2POp(dist.isend, x.contiguous(), (r + 1) % w), dist.P2POp(dist.irecv, buf, (r - 1) % w)]
    for req in dist.batch_isend_irecv(ops):
        req.wait()
    return buf


def mean_across(x: torch.Tensor) -> torch.Tensor:
    """The mean of a (detached) tensor over all processes, for logging."""
    if not is_distributed():
        return x
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / world_size()


def gather_objects(obj) -> list | None:
    """Every process's ``obj`` (picklable) on rank 0, in rank order; None on the other ranks."""
    if not is_distributed() or world_size() == 1:
        return [obj]
    out = [None] * world_size() if is_main() else None
    dist.gather_object(obj, out, dst=0)
    return out


def rank_seed(seed: int, rank: int) -> int:
    """The seed of process ``rank``'s own noise (dropout, augmentation): ``seed`` itself on rank 0,
    so one process draws as it always did; an independent SeedSequence draw of (seed, rank) on the
    others, so no two processes repeat each other's dropout masks or augmentations."""
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def local_offset(sizes: list[int]) -> int:
    """Index of this rank's first row in the gathered global batch (``sizes``: ``batch_sizes``)."""
    return sum(sizes[:rank()])


def elastic_restart() -> tuple[int, str | None]:
    """(how many times torchrun has restarted this worker group, its rendezvous id): (0, None) outside
    torchrun. ``torchrun --max-restarts N`` starts every process again after one fails."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0)), os.environ.get("TORCHELASTIC_RUN_ID")


def init_from_env(timeout_s: float | None = None) -> bool:
    """Initialise the process group when launched by torchrun: gloo for CPU tensors and, where
    CUDA is available, NCCL for GPU tensors (one process per GPU, chosen by LOCAL_RANK).

    ``timeout_s`` bounds how long one collective waits for the other processes (torch's default: 30
    minutes): past it the collective raises instead of hanging on a dead or stuck peer."""
    if "RANK" not in os.environ or is_distributed():
        return is_distributed()
    kw = {"timeout": datetime.timedelta(seconds=timeout_s)} if timeout_s else {}
    kw.update(_attempt_store(kw.get("timeout")))
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("cpu:gloo,cuda:nccl", **kw)
    else:
        dist.init_process_group("gloo", **kw)
    return True


def _attempt_store(timeout: datetime.timedelta | None) -> dict:
    """Under torchrun, a store of this restart attempt's own (``init_process_group`` arguments), else
    nothing (``env://`` as usual).

    torchrun's agent keeps one TCP store for the whole job (``TORCHELASTIC_USE_AGENT_STORE``) and
    this torch's ``env://`` handler connects to it without a per-attempt prefix: after a restart
    (``--max-restarts``) the keys of the failed attempt are still there, so a process that reaches
    ``init_process_group`` before its peer reads the dead peer's gloo address and fails with
    "Gloo connectFullMesh failed ... Connection refused" (or waits on a stale barrier). Each attempt
    gets its own key space here, as torch's launcher once did itself."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != str(True) or not os.environ.get("MASTER_ADDR"):
        return {}
    from torch.distributed.constants import default_pg_timeout

    attempt, job = elastic_restart()
    client = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                           int(os.environ["WORLD_SIZE"]), is_master=False, timeout=timeout or default_pg_timeout)
    return {"store": dist.PrefixStore(f"/littune/{job or 'job'}/attempt_{attempt}", client),
            "rank": int(os.environ["RANK"]), "world_size": int(os.environ["WORLD_SIZE"])}


class PeerLost(ConnectionError):
    """A collective failed: another process of the run died, dropped its connection or hung past the
    process group's timeout. The message says so and how to go on."""


# What gloo and NCCL say when a peer is gone; torch raises some of these as plain RuntimeErrors.
_PEER_SIGNS = ("gloo", "NCCL", "Connection reset", "Connection closed", "connection closed", "Broken pipe",
               "Timed out", "timed out", "Socket Timeout")


def is_peer_failure(e: BaseException) -> bool:
    """Whether ``e`` is a failed collective (a lost or hung peer) rather than a bug."""
    if isinstance(e, getattr(dist, "DistError", ())):
        return True
    return isinstance(e, RuntimeError) and is_distributed() and any(s in str(e) for s in _PEER_SIGNS)


def first_line(e: BaseException) -> str:
    """The gist of a gloo/NCCL error: its first sentence, without the source-file prefix."""
    line = (str(e).strip().splitlines() or [type(e).__name__])[0]
    line = re.sub(r"^\[[^\]]*\]\s*", "", line)  # "[.../gloo/transport/tcp/pair.cc:545] Read error ..."
    return line.split(". ")[0][:200]


def resolve_device(name: str = "auto") -> torch.device:
    """'auto': this process's GPU when CUDA is available (LOCAL_RANK under torchrun), else the CPU."""
    if name == "auto":
        name = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{name}' asked for, but CUDA is not available here")
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether bfloat16 matrix products run natively here: a CUDA GPU with bf16, or a CPU with AMX or
    AVX512-BF16. Elsewhere (e.g. AVX2 CPUs) torch emulates bf16, about 75x slower than fp32 (measured)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, n, None) for n in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(bool(c()) for c in checks if c is not None)


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto': bf16 autocast where the hardware runs it natively, else fp32."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision
