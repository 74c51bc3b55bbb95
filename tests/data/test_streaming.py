"""Streaming WebDataset shards: exact splitting over ranks and workers, bounded seeded shuffling,
and the training option ``data.stream=true`` built on it."""
from __future__ import annotations

import io
import itertools
import random
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from littune.data.workers import loader_workers
from littune.data.streaming import Bad, Sample, StreamingDataset, assign_shards, buffered_shuffle, shard_order
from littune.train.stream import StreamingBatches
from tests.data.shards import write_tar

SIZES = [5, 9, 3, 7, 6, 4, 8]  # 7 shards, uneven: 42 samples; 7 shards over 4 readers do not divide


def _jpeg(i: int, size: int = 24) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), ((37 * i) % 256, (91 * i) % 256, (53 * i) % 256)).save(buf, "JPEG")
    return buf.getvalue()


def make_shards(folder: Path, sizes=SIZES, broken: dict[str, bytes] | None = None) -> list[str]:
    """Shards of tiny JPEGs keyed s{shard}_{i:02d}, captioned "caption of KEY"."""
    folder.mkdir(parents=True, exist_ok=True)
    out, n = [], 0
    for s, size in enumerate(sizes):
        members = []
        for i in range(size):
            key = f"s{s}_{i:02d}"
            members += [(f"{key}.jpg", (broken or {}).get(key, _jpeg(n))), (f"{key}.txt", f"caption of {key}".encode())]
            n += 1
        out.append(str(write_tar(folder / f"{s:05d}.tar", members)))
    return out


def all_keys(sizes=SIZES) -> list[str]:
    return [f"s{s}_{i:02d}" for s, size in enumerate(sizes) for i in range(size)]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[str]:
    return make_shards(tmp_path_factory.mktemp("stream") / "shards")


# ---- splitting --------------------------------------------------------------------------------

def test_assignment_is_a_partition_and_balanced():
    for n, world, workers in itertools.product(range(0, 15), (1, 2, 3), (1, 2, 3)):
        G = world * workers
        got = [assign_shards(n, r, world, w, workers) for r in range(world) for w in range(workers)]
        flat = sorted(itertools.chain.from_iterable(got))
        assert flat == list(range(n)), (n, world, workers)  # every shard once, none twice
        counts = [len(g) for g in got]
        # the documented policy: the first n % G readers get one shard more
        assert counts == [n // G + (g < n % G) for g in range(G)], (n, world, workers)


def test_shard_order_is_the_same_everywhere_and_changes_per_epoch():
    assert shard_order(7, seed=3, epoch=0) == shard_order(7, seed=3, epoch=0)
    assert sorted(shard_order(7, 3, 0)) == list(range(7))
    assert len({tuple(shard_order(7, 3, e)) for e in range(6)}) > 1
    assert shard_order(7, 3, 5, shuffle=False) == list(range(7))


def _samples_of_rank(shards, rank: int, world: int, workers: int, epoch: int, seed: int = 0, transform=None) -> list:
    ds = StreamingDataset(shards, rank=rank, world=world, seed=seed, epoch=epoch, epochs=1, shuffle_buffer=8,
                          transform=transform)
    loader = DataLoader(ds, batch_size=None, **loader_workers(workers))
    return list(loader)


def test_two_ranks_two_workers_see_every_sample_once_per_epoch(shards):
    """Real DataLoader workers (2 per simulated rank); the 7 shards do not divide by 4 readers."""
    per_epoch = []
    for epoch in (0, 1):
        samples = [s for rank in (0, 1) for s in _samples_of_rank(shards, rank, 2, 2, epoch)]
        keys = [s.key for s in samples]
        assert Counter(keys) == Counter(all_keys()), f"epoch {epoch}: lost or duplicated samples"
        assert all(isinstance(s.image, bytes) and s.caption == f"caption of {s.key}" for s in samples)
        per_epoch.append(keys)
    assert per_epoch[0] != per_epoch[1]  # a new shard order and shuffle each epoch


def test_epochs_in_one_pass_and_decoding_with_a_transform(shards):
    ds = StreamingDataset(shards, rank=1, world=2, epochs=3, transform=lambda im: torch.tensor(im.size))
    samples = list(ds.samples())
    assert all(isinstance(s, Sample) and torch.equal(s.image, torch.tensor([24, 24])) for s in samples)
    per_epoch = [[s.key for s in ds.records(e)] for e in range(3)]
    assert [s.key for s in samples] == sum(per_epoch, [])
    # with the other rank, each epoch is the whole data set exactly once
    other = StreamingDataset(shards, rank=0, world=2, epochs=1)
    for e in range(3):
        other.set_epoch(e)
        assert Counter(per_epoch[e] + [s.key for s in other]) == Counter(all_keys())


# ---- shuffling --------------------------------------------------------------------------------

def test_shuffle_is_reproducible_for_a_seed_and_differs_between_epochs_and_seeds(shards):
    def order(seed, epoch):
        return [s.key for s in StreamingDataset(shards, seed=seed, epoch=epoch, shuffle_buffer=16)]

    a = order(0, 0)
    assert a == order(0, 0)
    assert sorted(a) == sorted(all_keys())
    assert a != order(0, 1) and a != order(1, 0)
    assert a != all_keys()


def test_buffered_shuffle_holds_at_most_size_items():
    size, n = 10, 500
    consumed = 0

    def source():
        nonlocal consumed
        for i in range(n):
            consumed += 1
            yield i

    out, held = [], 0
    for x in buffered_shuffle(source(), size, random.Random(0)):
        out.append(x)
        held = max(held, consumed - len(out))  # items read but not yet given out
    assert sorted(out) == list(range(n))
    assert held <= size
    assert out != list(range(n))
    assert list(buffered_shuffle(range(5), 1, random.Random(0))) == list(range(5))


def test_stream_buffer_bounds_how_far_a_sample_moves(shards):
    """A sample can only come out once at most ``buffer`` later ones have been read."""
    buffer = 4
    ds = StreamingDataset(shards, shuffle_shards=False, shuffle_buffer=buffer, seed=5)
    read = all_keys()  # shard order unshuffled: this is the reading order
    out = [s.key for s in ds]
    assert sorted(out) == sorted(read)
    for position, key in enumerate(out):
        assert read.index(key) <= position + buffer - 1, key


# ---- bad inputs -------------------------------------------------------------------------------

def test_bad_images_and_samples_are_skipped_or_reported(tmp_path):
    sizes = [4, 4]
    paths = make_shards(tmp_path / "bad", sizes, broken={"s0_01": b"not a jpeg", "s1_02": _jpeg(9)[:40]})
    with tarfile.open(paths[1], "a") as tar:  # an image without a caption
        info = tarfile.TarInfo("nocap.jpg")
        data = _jpeg(3)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    decode = StreamingDataset(paths, transform=lambda im: im.size)
    assert sorted(s.key for s in decode) == sorted(set(all_keys(sizes)) - {"s0_01", "s1_02"})
    kept = list(StreamingDataset(paths, transform=lambda im: im.size, keep_bad=True))
    bad = {b.key: b.reason for b in kept if isinstance(b, Bad)}
    assert set(bad) == {"s0_01", "s1_02", "nocap"} and bad["nocap"] == "missing caption file"
    raw = list(StreamingDataset(paths))  # no transform: bytes are passed on undecoded
    assert len(raw) == 8


# ---- training batches -------------------------------------------------------------------------

def _pixels(im):
    return torch.from_numpy(np.asarray(im, dtype=np.float32)).permute(2, 0, 1)[:, :4, :4]


def test_streaming_batches_resume_by_step_and_split_across_ranks(shards):
    def batches(rank, start, stop, workers=2):
        sb = StreamingBatches(shards, _pixels, batch_size=6, seed=1, num_workers=workers, shuffle_buffer=8,
                              rank=rank, world=2)
        return list(sb.iterate(start, stop))

    full = batches(0, 0, 8)
    assert len(full) == 8 and all(len(b["captions"]) == 3 and b["pixels"].shape == (3, 3, 4, 4) for b in full)
    assert [b["index"] for b in full] == list(range(8))
    resumed = batches(0, 5, 8)
    assert [b["keys"] for b in resumed] == [b["keys"] for b in full[5:]]
    for a, b in zip(resumed, full[5:]):
        assert torch.equal(a["pixels"], b["pixels"])
    # Rank 1 streams other shards: in the first steps (within one epoch) the two never share a sample.
    other = batches(1, 0, 3)
    assert not set(k for b in full[:3] for k in b["keys"]) & set(k for b in other for k in b["keys"])
    # The stream runs past an epoch (rank 0 holds ~21 samples, 8 batches of 3 need 24) without a gap.
    single = batches(0, 0, 8, workers=0)
    assert len(single) == 8 and [b["index"] for b in single] == list(range(8))


@pytest.mark.parametrize("workers", [0, 1])
def test_streaming_batches_leave_the_trainers_random_state_alone(shards, workers):
    """The trainer's dropout draws from the global RNG: streaming must not move it (a DataLoader's base
    seed drawn from it, or the augmentation's seeding in the trainer's process), or a resumed run,
    whose loader starts at another point, would draw other masks than an uninterrupted one."""
    sb = StreamingBatches(shards, _pixels, batch_size=6, seed=1, num_workers=workers, shuffle_buffer=8, rank=0, world=2)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    assert len(list(sb.iterate(2, 4))) == 2
    assert torch.equal(torch.rand(3), expected)


def test_streaming_batches_stay_full_when_images_are_bad(tmp_path):
    paths = make_shards(tmp_path / "s", [6, 6], broken={"s0_02": b"junk", "s1_00": b"junk"})
    sb = StreamingBatches(paths, _pixels, batch_size=5, num_workers=0, shuffle_buffer=1)
    got = list(sb.iterate(0, 2))  # the 10 good samples of epoch 0, in two full batches
    assert all(len(b["captions"]) == 5 and b["pixels"].shape[0] == 5 for b in got)
    assert sorted(row[0] for b in got for row in b["bad"]) == ["s0_02", "s1_00"]
    keys = [k for b in got for k in b["keys"]]
    assert sorted(keys) == sorted(set(all_keys([6, 6])) - {"s0_02", "s1_00"})


def test_too_few_shards_for_the_processes_is_refused(shards):
    from littune.config import ConfigError

    with pytest.raises(ConfigError, match="at least one per process"):
        StreamingBatches(shards[:1], _pixels, batch_size=4, rank=0, world=2)
    sb = StreamingBatches(shards, _pixels, batch_size=4, num_workers=8, rank=0, world=2)
    assert sb.num_workers == 3  # 7 shards // 2 processes: every worker has a shard


# ---- the training option ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    from tests.cache.tiny_data import save_tower_weights

    return save_tower_weights(tmp_path_factory.mktemp("tower") / "test_vit.safetensors")


def test_training_streams_webdataset_shards(tmp_path, shards, tiny_weights):
    from tests.cache.tiny_data import model_overrides

    from littune.train import Trainer, load_config
    from littune.config import ConfigError

    base = model_overrides(tiny_weights) + [
        f"data.train={Path(shards[0]).parent}", "train.batch_size=4", "train.steps=2", "train.progress=false",
        "train.threads=1", "train.ckpt_every=0", "data.num_workers=0", "data.stream_buffer=4"]
    tr = Trainer(load_config(None, base + ["data.stream=true", "data.use_cache=false",
                                           f"train.out_dir={tmp_path / 'run'}"]))
    assert isinstance(tr.batches, StreamingBatches)
    summary = tr.fit()
    assert summary["step"] == 2 and (tmp_path / "run" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "tokenizer" / "tokenizer.json").is_file()  # trained on the streamed captions

    with pytest.raises(ConfigError, match="data.use_cache=false"):  # locked tower + cache: nothing to stream
        Trainer(load_config(None, base + ["data.stream=true", f"train.out_dir={tmp_path / 'r2'}"]))
    with pytest.raises(ConfigError, match="WebDataset shards"):
        Trainer(load_config(None, base + ["data.stream=true", "data.use_cache=false", "data.train=x.csv",
                                          f"train.out_dir={tmp_path / 'r3'}"]))
