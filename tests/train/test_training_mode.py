"""The trainer puts the model in training mode before every step without walking every module each
time: ``model.train()`` runs when a module that trains has left training mode (an evaluation's
``eval()``, on the whole model or one tower), and a locked part stays in eval mode throughout."""
from __future__ import annotations

from types import SimpleNamespace

from torch import nn

from littune.train.loop import Trainer


class Locked(nn.Module):
    """A locked tower's rule (towers/lock.py): whatever mode is asked, it stays in eval mode."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))

    def train(self, mode: bool = True) -> "Locked":
        super().train(mode)
        nn.Module.train(self, False)
        self.body.train(False)
        return self


class Counting(nn.Module):
    def __init__(self):
        super().__init__()
        self.locked = Locked()
        self.head = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
        self.calls = 0

    def train(self, mode: bool = True) -> "Counting":
        self.calls += mode
        return super().train(mode)


def trainer():
    model = Counting().eval()
    return SimpleNamespace(model=model, _training=None), model


def test_first_step_sets_training_mode_and_the_locked_part_stays_in_eval():
    t, model = trainer()
    Trainer._training_mode(t)
    assert model.training and model.head.training and model.head[1].training
    assert not model.locked.training and not model.locked.body[1].training
    assert model.calls == 1


def test_unchanged_modes_are_not_set_again():
    t, model = trainer()
    for _ in range(5):
        Trainer._training_mode(t)
    assert model.calls == 1


def test_an_evaluation_of_the_whole_model_or_of_one_part_is_undone_before_the_next_step():
    t, model = trainer()
    Trainer._training_mode(t)
    model.eval()  # encode.py: the whole model
    Trainer._training_mode(t)
    assert model.head[1].training and model.calls == 2
    model.head[1].eval()  # one part only (encode.py evaluates an unlocked tower by itself)
    assert model.training  # the top module's flag alone would miss it
    Trainer._training_mode(t)
    assert model.head[1].training and model.calls == 3
    assert not model.locked.body[1].training
