"""Lock settings from the LiT paper (Zhai et al. 2022, Sec. 3) and a proof that a lock held.

The paper names each tower's setting with one letter: ``L`` locked pre-trained, ``U`` unlocked
pre-trained, ``u`` unlocked from random init (so ``LU`` = locked image, pre-trained text tuned).
We add the middle ground: ``locked_blocks=N`` locks the lowest N layer groups of a ``U`` tower,
and a per-tower learning-rate multiplier (applied by the optimiser).

A locked module runs in eval mode (batch-norm statistics frozen) and, when the whole tower is
locked, without autograd. ``fingerprint`` hashes every parameter and buffer, so anyone can show
that training left the locked tower bit-identical.
"""
from __future__ import annotations

import contextlib
import hashlib
from typing import Mapping

import torch
from torch import nn

LOCK_MODES = {
    "L": "locked, pre-trained weights (eval mode, no gradients)",
    "U": "unlocked, pre-trained weights (trained)",
    "u": "unlocked, random init (trained from scratch)",
}


def check_lock_mode(mode: str, field: str = "lock") -> str:
    if mode not in LOCK_MODES:
        raise ValueError(f"{field}='{mode}' is not a lock setting; use one of "
                         + ", ".join(f"'{k}' ({v})" for k, v in LOCK_MODES.items()))
    return mode


def parse_setting(setting: str) -> tuple[str, str]:
    """Paper notation 'Lu' -> (image lock 'L', text lock 'u')."""
    if len(setting) != 2:
        raise ValueError(f"setting '{setting}' must be two letters, image then text, e.g. 'LU'")
    return check_lock_mode(setting[0], "image lock"), check_lock_mode(setting[1], "text lock")


def fingerprint(module: nn.Module) -> str:
    """SHA-256 over every parameter and buffer (names, dtypes, shapes, bytes), as 16 hex digits."""
    return fingerprint_state(module.state_dict())


def fingerprint_state(state: Mapping[str, torch.Tensor]) -> str:
    """``fingerprint`` of a state dict (e.g. tensors read from a weights file, under their own names)."""
    h = hashlib.sha256()
    for name, t in sorted(state.items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


class Lockable(nn.Module):
    """Mixin for towers: ordered layer groups, a lock state, and eval mode for what is locked."""

    lock_mode: str = "U"
    locked_blocks: int = 0

    def layer_groups(self) -> list[nn.Module]:
        """The tower's layers from input to output (stem first), for partial locking."""
        raise NotImplementedError

    def set_lock(self, mode: str, locked_blocks: int = 0) -> None:
        check_lock_mode(mode)
        if locked_blocks < 0:
            raise ValueError(f"locked_blocks must be >= 0, got {locked_blocks}")
        if locked_blocks and mode == "L":
            raise ValueError("locked_blocks applies to an unlocked tower ('U' or 'u'); 'L' locks all")
        groups = self.layer_groups() if locked_blocks else []
        if locked_blocks > len(groups):
            raise ValueError(f"locked_blocks={locked_blocks} but the tower has {len(groups)} groups")
        self.lock_mode, self.locked_blocks = mode, locked_blocks
        self.requires_grad_(mode != "L")
        for g in groups[:locked_blocks]:
            g.requires_grad_(False)
        self._frozen = [self] if mode == "L" else groups[:locked_blocks]
        self.train(self.training)

    @property
    def locked(self) -> bool:
        return self.lock_mode == "L"

    def train(self, mode: bool = True) -> "Lockable":
        super().train(mode)
        for m in getattr(self, "_frozen", []):
            nn.Module.train(m, False)  # frozen batch-norm statistics, no dropout
        return self

    def grad_context(self):
        """no_grad for a fully locked tower: its activations need no graph."""
        return torch.no_grad() if self.locked else contextlib.nullcontext()

    def lock_summary(self) -> dict:
        n_all = sum(p.numel() for p in self.parameters())
        n_train = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {"lock": self.lock_mode, "locked_blocks": self.locked_blocks,
                "params": n_all, "trainable_params": n_train}
