"""Cross-process helpers: gather embeddings with autograd so each example sees global negatives.

Single process: every function is the identity. Under ``torchrun`` the gather's backward sums
the gradients that every process computed for this rank's rows; DDP then averages parameter
gradients over processes, which gives exactly the single-process gradient of the global-batch
loss, with or without the local loss (tested with 2 real processes, every parameter compared).
"""
from __future__ import annotations

import datetime
import os
import re

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


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward sums every process's gradient and keeps this rank's slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # all_reduce: supported by gloo and NCCL alike
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """(b, E) local rows -> (world*b, E) global rows, rank order; gradients flow back to each rank."""
    if not is_distributed() or world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


def mean_across(x: torch.Tensor) -> torch.Tensor:
    """The mean of a (detached) tensor over all processes, for logging."""
    if not is_distributed():
        return x
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / world_size()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def local_offset(local_batch: int) -> int:
    """Index of this rank's first row in the gathered global batch."""
    return rank() * local_batch


def init_from_env(timeout_s: float | None = None) -> bool:
    """Initialise the process group when launched by torchrun: gloo for CPU tensors and, where
    CUDA is available, NCCL for GPU tensors (one process per GPU, chosen by LOCAL_RANK).

    ``timeout_s`` bounds how long one collective waits for the other processes (torch's default: 30
    minutes): past it the collective raises instead of hanging on a dead or stuck peer."""
    if "RANK" not in os.environ or is_distributed():
        return is_distributed()
    kw = {"timeout": datetime.timedelta(seconds=timeout_s)} if timeout_s else {}
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("cpu:gloo,cuda:nccl", **kw)
    else:
        dist.init_process_group("gloo", **kw)
    return True


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
