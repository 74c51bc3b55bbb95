"""The lock's user-facing contract on a three-layer toy tower: the messages that name the bad setting,
the summary's keys and counts, and the fingerprint's documented format (names, dtypes, shapes, bytes)."""
from __future__ import annotations

import hashlib

import pytest
import torch
from torch import nn

from littune.towers.lock import Lockable, check_lock_mode, fingerprint_state, parse_setting

MODES = "'L' (locked, pre-trained weights (eval mode, no gradients)), 'U' (unlocked, pre-trained weights " \
        "(trained)), 'u' (unlocked, random init (trained from scratch))"


class Toy(Lockable):
    """stem (4 -> 3, with batch norm), body (3 -> 2), head (2 -> 1): 15 + 6 + 8 + 3 = 32 parameters."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
        self.body = nn.Linear(3, 2)
        self.head = nn.Linear(2, 1)

    def layer_groups(self) -> list[nn.Module]:
        return [self.stem, self.body, self.head]


class NoGroups(Lockable):
    """A tower that cannot be locked in part: it has no layer groups."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)


def test_a_bad_lock_letter_names_the_field_and_lists_the_settings():
    with pytest.raises(ValueError) as e:
        check_lock_mode("x")
    assert str(e.value) == f"lock='x' is not a lock setting; use one of {MODES}"
    with pytest.raises(ValueError, match=r"^image lock='X' is not a lock setting; use one of 'L' \(locked"):
        parse_setting("XU")
    with pytest.raises(ValueError, match=r"^text lock='l' is not a lock setting; use one of 'L' \(locked"):
        parse_setting("Ul")
    with pytest.raises(ValueError, match=r"^setting 'LUU' must be two letters, image then text, e.g. 'LU'$"):
        parse_setting("LUU")


def test_locked_blocks_on_a_locked_tower_is_refused_with_the_letters():
    with pytest.raises(ValueError, match=r"^locked_blocks applies to an unlocked tower \('U' or 'u'\); 'L' locks all$"):
        Toy().set_lock("L", locked_blocks=1)


def test_summary_counts_parameters_under_its_keys():
    toy = Toy()
    assert toy.lock_summary() == {"lock": "U", "locked_blocks": 0, "params": 32, "trainable_params": 32}
    toy.set_lock("u", locked_blocks=2)  # stem and body frozen: only the head's 3 train
    assert toy.lock_summary() == {"lock": "u", "locked_blocks": 2, "params": 32, "trainable_params": 3}
    assert [p.requires_grad for p in toy.parameters()] == [False] * 6 + [True] * 2
    toy.train()
    assert toy.training and not toy.stem.training and not toy.stem[1].training and not toy.body.training
    assert toy.head.training
    toy.set_lock("L")
    assert toy.lock_summary() == {"lock": "L", "locked_blocks": 0, "params": 32, "trainable_params": 0}
    assert not toy.train().training


def test_a_tower_without_layer_groups_locks_whole_and_trains_before_any_lock():
    tower = NoGroups()
    assert tower.train().training and not tower.eval().training  # no lock set yet: plain module modes
    tower.set_lock("L")  # whole-tower settings never ask for layer groups
    assert not tower.train().training and not tower.lin.weight.requires_grad
    tower.set_lock("U")
    assert tower.train().training and tower.lin.weight.requires_grad
    with pytest.raises(NotImplementedError):
        tower.set_lock("U", locked_blocks=1)


def _documented(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over sorted names: 'name|dtype|shape|' and then the raw bytes, first 16 hex digits."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name]
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode() + t.numpy().tobytes())
    return h.hexdigest()[:16]


def test_fingerprint_follows_its_documented_format_also_for_empty_tensors():
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "empty": torch.zeros(0, 4),
             "count": torch.tensor(3)}
    assert fingerprint_state(state) == _documented(state)
    assert fingerprint_state({"empty": torch.zeros(0)}) == hashlib.sha256(b"empty|torch.float32|(0,)|").hexdigest()[:16]
