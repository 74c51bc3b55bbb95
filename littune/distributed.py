"""Cross-process helpers: gather embeddings with autograd so each example sees global negatives.

Single process: every function is the identity. Under ``torchrun`` the gather uses
``torch.distributed.nn.functional.all_gather``, whose backward sums the incoming gradients onto
each rank's own slice; with DDP's gradient averaging this gives exactly the single-process
gradient of the global-batch loss (tested with 2 real processes).
"""
from __future__ import annotations

import os

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


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """(b, E) local rows -> (world*b, E) global rows, rank order; gradients flow back to each rank."""
    if not is_distributed() or world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), dim=0)


def local_offset(local_batch: int) -> int:
    """Index of this rank's first row in the gathered global batch."""
    return rank() * local_batch


def init_from_env() -> bool:
    """Initialise the process group when launched by torchrun (gloo on CPU, NCCL on GPU)."""
    if "RANK" not in os.environ or is_distributed():
        return is_distributed()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return True
