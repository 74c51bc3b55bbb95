"""What ``PairSchedule`` promises, checked on the schedule itself (not through runs that share it).

A batch never holds one image twice (Flickr8k's five captions per image would otherwise become
false negatives of the contrastive loss), an epoch visits every image once (the tail that does not
fill a batch is dropped), every caption comes up across epochs, and under torchrun the ranks' slices
of a step are disjoint and together are exactly the one-process batch.
"""
from __future__ import annotations

import numpy as np
import pytest

from littune.train.batches import PairSchedule

SIZES = [(40, 8), (53, 8), (37, 12), (16, 16), (100, 7)]  # (images, global batch)


@pytest.mark.parametrize("n, batch", SIZES)
def test_a_batch_never_holds_one_image_twice(n, batch):
    s = PairSchedule([5] * n, batch, seed=11)
    for step in range(6 * (n // batch)):  # six epochs
        rows, caps, views = s.batch(step)
        assert len(rows) == batch and len(set(rows.tolist())) == batch, (step, sorted(rows.tolist()))


@pytest.mark.parametrize("n, batch", SIZES)
def test_each_epoch_visits_every_image_once_and_drops_only_the_tail(n, batch):
    s = PairSchedule([1 + i % 5 for i in range(n)], batch, seed=3)
    per_epoch = n // batch
    orders = []
    for e in range(3):
        seen = np.concatenate([s.batch(e * per_epoch + b)[0] for b in range(per_epoch)])
        assert len(seen) == per_epoch * batch == len(set(seen.tolist()))  # once each
        assert ((0 <= seen) & (seen < n)).all()
        order = s.epoch(e)[0]
        assert sorted(order.tolist()) == list(range(n))  # the epoch is a permutation of all images
        assert seen.tolist() == order[:per_epoch * batch].tolist()  # batches are its consecutive slices
        orders.append(order.tolist())
        assert s.position(e * per_epoch + per_epoch - 1) == {"epoch": e, "batch_in_epoch": per_epoch - 1,
                                                             "batches_per_epoch": per_epoch}
    assert orders[0] != orders[1] != orders[2]  # reshuffled every epoch


def test_every_image_is_seen_over_epochs_even_when_a_tail_is_dropped():
    n, batch = 10, 4  # two images dropped per epoch, different ones each time
    s = PairSchedule([1] * n, batch, seed=0)
    seen = set()
    for step in range(2 * 20):
        seen.update(s.batch(step)[0].tolist())
    assert seen == set(range(n))


def test_captions_stay_in_range_and_all_come_up_across_epochs():
    n_caps = [5, 1, 3, 2] * 5  # 20 images
    s = PairSchedule(n_caps, 4, seed=7)
    used = {i: set() for i in range(20)}
    for step in range(5 * 60):  # 60 epochs
        rows, caps, _ = s.batch(step)
        for r, c in zip(rows.tolist(), caps.tolist()):
            assert 0 <= c < n_caps[r], (r, c)
            used[r].add(c)
    assert all(used[i] == set(range(n_caps[i])) for i in range(20)), used


def test_views_range_over_the_original_and_each_augmented_view():
    s = PairSchedule([1] * 30, 5, seed=2, views=2)
    views = np.concatenate([s.batch(step)[2] for step in range(60)])
    assert set(views.tolist()) == {0, 1, 2}
    assert set(np.concatenate([PairSchedule([1] * 30, 5).batch(t)[2] for t in range(12)]).tolist()) == {0}


@pytest.mark.parametrize("world", [2, 3, 4])
def test_rank_slices_are_disjoint_and_together_the_one_process_batch(world):
    n, batch = 50, 12
    whole = PairSchedule([3] * n, batch, seed=5)
    ranks = [PairSchedule([3] * n, batch, seed=5, rank=r, world=world) for r in range(world)]
    for step in range(3 * (n // batch) + 1):
        parts = [r.batch(step) for r in ranks]
        for k in range(3):  # rows, captions, views: concatenated in rank order = the global batch
            assert np.concatenate([p[k] for p in parts]).tolist() == whole.batch(step)[k].tolist()
        rows = [set(p[0].tolist()) for p in parts]
        assert all(len(p[0]) == batch // world for p in parts)
        assert len(set().union(*rows)) == batch  # disjoint: no image on two ranks


def test_a_batch_depends_only_on_seed_and_step():
    a, b = PairSchedule([2] * 33, 6, seed=9), PairSchedule([2] * 33, 6, seed=9)
    later = [a.batch(t) for t in (17, 3, 0, 17)]  # any order, a fresh object: same batches
    for t, got in zip((17, 3, 0, 17), later):
        for x, y in zip(got, b.batch(t)):
            assert x.tolist() == y.tolist()
    default = PairSchedule([2] * 33, 6)  # the default seed is 0
    assert all(default.batch(t)[0].tolist() == PairSchedule([2] * 33, 6, seed=0).batch(t)[0].tolist()
               != PairSchedule([2] * 33, 6, seed=1).batch(t)[0].tolist() for t in range(3))
    other = PairSchedule([2] * 33, 6, seed=10)
    assert any(a.batch(t)[0].tolist() != other.batch(t)[0].tolist() for t in range(5))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="not divisible by 3 processes"):
        PairSchedule([1] * 20, 8, world=3)
    with pytest.raises(ValueError, match="larger than the data set"):
        PairSchedule([1] * 7, 8)
    assert PairSchedule([1] * 8, 8).batch(5)[0].tolist() != []  # exactly one batch per epoch works
    with pytest.raises(ValueError, match="^every image needs at least one caption$"):
        PairSchedule([1, 0, 2, 1], 2)
