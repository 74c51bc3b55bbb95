"""Retrieval metrics: exact toy answers, chunked == full reference, multi-caption protocol."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from littune.evaluate.retrieval import retrieval_metrics, retrieval_metrics_full

# Trick for exact toy cases: with text_emb = identity (M x M), image_emb @ text_emb.T is
# image_emb itself, so each image row IS its row of the similarity matrix (ties included).
TOY_SCORES = torch.tensor(
    [
        # captions: 0    1    2    3    4    5   (owners 0,0,1,1,2,2)
        [0.9, 0.1, 0.8, 0.7, 0.0, 0.05],  # img0: best own 0.9 beats all -> rank 0
        [0.85, 0.8, 0.5, 0.75, 0.6, 0.02],  # img1: best own 0.75, two negatives above -> rank 2
        [0.5, 0.45, 0.3, 0.2, 0.55, 0.4],  # img2: best own 0.55 -> rank 0
    ]
)
TOY_OWNERS = torch.tensor([0, 0, 1, 1, 2, 2])


@pytest.mark.parametrize("fn", [retrieval_metrics, retrieval_metrics_full])
def test_toy_exact_values(fn):
    m = fn(TOY_SCORES, torch.eye(6), TOY_OWNERS, ks=(1, 2, 3))
    # image->text ranks (1-based) [1, 3, 1]
    assert m["i2t_r1"] == pytest.approx(2 / 3)
    assert m["i2t_r2"] == pytest.approx(2 / 3)
    assert m["i2t_r3"] == 1.0
    assert m["i2t_medr"] == 1.0
    # text->image: columns of TOY_SCORES vs own image; ranks (1-based) [1, 3, 2, 1, 2, 1]
    assert m["t2i_r1"] == pytest.approx(3 / 6)
    assert m["t2i_r2"] == pytest.approx(5 / 6)
    assert m["t2i_r3"] == 1.0 and "K=3 equals the 3 images" in m["trivial"]["t2i_r3"]  # every query hits
    assert "i2t_r3" not in m["trivial"]  # 6 captions to choose from
    assert m["t2i_medr"] == 1.5
    assert (m["n_images"], m["n_texts"]) == (3, 6)


def test_default_keys_and_perfect_match():
    emb = F.normalize(torch.randn(20, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    m = retrieval_metrics(emb, emb.clone(), torch.arange(20))
    for d in ("i2t", "t2i"):
        for k in (1, 5, 10):
            assert m[f"{d}_r{k}"] == 1.0
        assert m[f"{d}_medr"] == 1.0


def test_chance_level_when_text_is_unrelated():
    g = torch.Generator().manual_seed(1)
    img = F.normalize(torch.randn(400, 64, generator=g), dim=1)
    txt = F.normalize(torch.randn(400, 64, generator=g), dim=1)
    m = retrieval_metrics(img, txt, torch.arange(400), ks=(1, 40))
    assert m["t2i_r1"] < 0.02 and m["i2t_r1"] < 0.02
    assert 0.05 < m["t2i_r40"] < 0.16  # chance is 40/400 = 0.1


def _random_problem(n, per_image, d, seed, integer=False):
    g = torch.Generator().manual_seed(seed)
    owners = torch.arange(n).repeat_interleave(per_image)
    owners = owners[torch.randperm(len(owners), generator=g)]  # captions in random order
    if integer:
        # Small integers: many exact ties, and float32 dot products are exact.
        img = torch.randint(-2, 3, (n, d), generator=g).float()
        txt = torch.randint(-2, 3, (len(owners), d), generator=g).float()
    else:
        img = F.normalize(torch.randn(n, d, generator=g), dim=1)
        # Captions correlated with their image so recalls are neither 0 nor 1.
        txt = F.normalize(img[owners] + 1.5 * torch.randn(len(owners), d, generator=g), dim=1)
    return img, txt, owners


@pytest.mark.parametrize("integer", [False, True], ids=["continuous", "ties"])
def test_chunked_equals_full(integer):
    img, txt, owners = _random_problem(n=53, per_image=5, d=6 if integer else 32, seed=3, integer=integer)
    ks = (1, 5, 10)
    ref = retrieval_metrics_full(img, txt, owners, ks=ks)
    assert 0.0 < ref["i2t_r1"] < 1.0 and 0.0 < ref["t2i_r1"] < 1.0
    for chunk in (1, 7, 50, 53, 64, 1024):  # includes sizes that do not divide N or M
        assert retrieval_metrics(img, txt, owners, ks=ks, chunk_size=chunk) == ref, chunk


def test_multi_caption_protocol_against_brute_force():
    """i2t hit at K iff ANY own caption is in the top K; t2i hit iff own image in top K."""
    img, txt, owners = _random_problem(n=30, per_image=5, d=16, seed=4)
    sim = (img @ txt.T).numpy()  # continuous scores: no ties
    k = 5
    i2t = np.mean([bool(set(np.argsort(-sim[i])[:k]) & set(np.flatnonzero(owners.numpy() == i)))
                   for i in range(30)])
    t2i = np.mean([owners[j].item() in set(np.argsort(-sim[:, j])[:k]) for j in range(150)])
    m = retrieval_metrics(img, txt, owners, ks=(k,), chunk_size=8)
    assert m["i2t_r5"] == pytest.approx(i2t)
    assert m["t2i_r5"] == pytest.approx(t2i)
    # Five chances per image make image->text easier than text->image here.
    assert m["i2t_r5"] > m["t2i_r5"]


def test_half_precision_inputs_are_accepted():
    img, txt, owners = _random_problem(n=20, per_image=2, d=8, seed=5)
    m16 = retrieval_metrics(img.half(), txt.half(), owners)
    assert set(m16) == set(retrieval_metrics(img, txt, owners))


def test_errors_name_the_problem():
    img, txt = torch.eye(3), torch.eye(3)
    with pytest.raises(ValueError, match="outside the 3 images"):
        retrieval_metrics(img, txt, torch.tensor([0, 1, 3]))
    with pytest.raises(ValueError, match="outside"):
        retrieval_metrics(img, txt, torch.tensor([0, -1, 2]))
    with pytest.raises(ValueError, match="no caption"):
        retrieval_metrics(img, txt, torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="one entry per text"):
        retrieval_metrics(img, txt, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="dims differ"):
        retrieval_metrics(img, torch.eye(3, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="integer"):
        retrieval_metrics(img, txt, torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="chunk_size"):
        retrieval_metrics(img, txt, torch.arange(3), chunk_size=0)
    with pytest.raises(ValueError, match="ks"):
        retrieval_metrics(img, txt, torch.arange(3), ks=(0,))


# ---- which data a retrieval evaluation reads: the split asked for, or an error -----------------------
def test_a_split_that_contradicts_the_data_spec_is_refused_naming_both(tmp_path):
    from littune.evaluate.evaluators import create_evaluator, retrieval_spec, split_or_default

    (tmp_path / "captions.csv").write_text("image,caption\n")  # enough to look like a Flickr8k folder
    f8k = f"flickr8k:{tmp_path}"
    with pytest.raises(ValueError, match=rf"{f8k}:dev names split 'dev' but split 'test' was asked for"):
        retrieval_spec(f"{f8k}:dev", "test")
    with pytest.raises(ValueError, match="split 'test' asked for, but pairs.csv has no splits"):
        retrieval_spec("pairs.csv", "test")
    assert retrieval_spec(f"{f8k}:dev", "dev") == retrieval_spec(f"{f8k}:dev", None) == f"{f8k}:dev"
    assert retrieval_spec(f8k, "test") == retrieval_spec(str(tmp_path), "test") == f"{f8k}:test"
    assert retrieval_spec("pairs.csv", None) == "pairs.csv"
    # The CLI's and eval_retrieval's default: the split the data names, else test (never a substitute).
    assert split_or_default(f"{f8k}:dev", None) is None and split_or_default(f8k, None) == "test"
    assert split_or_default(str(tmp_path), None) == "test" and split_or_default("pairs.csv", None) is None
    # The evaluator refuses when it is built: before a model is loaded or a step is trained.
    with pytest.raises(ValueError, match="names split 'dev' but split 'test'"):
        create_evaluator("retrieval", {"data": f"{f8k}:dev", "split": "test"})


def test_cli_refuses_a_contradictory_split_before_loading_the_model(tmp_path, capsys):
    from littune.cli import main

    (tmp_path / "captions.csv").write_text("image,caption\n")
    args = ["eval", "retrieval", "--model", str(tmp_path / "no-model"), "--data", f"flickr8k:{tmp_path}:dev"]
    assert main([*args, "--split", "test"]) == 2
    err = capsys.readouterr().err
    assert "littune eval: error:" in err and "'dev'" in err and "'test'" in err
    assert main(args) == 2  # no contradiction: it gets as far as the (missing) model
    assert "model directory not found" in capsys.readouterr().err


@pytest.mark.parametrize("fn", [retrieval_metrics, retrieval_metrics_full])
def test_ties_as_clip_benchmark_resolves_them(fn):
    """Tie-heavy integer scores: R@K equals CLIP_benchmark 1.6.2's own ``recall_at_k`` (torch.topk)."""
    from clip_benchmark.metrics.zeroshot_retrieval import recall_at_k

    img, txt, owners = _random_problem(n=40, per_image=3, d=4, seed=6, integer=True)
    scores = txt @ img.T  # (M, N) as CLIP_benchmark holds it
    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[torch.arange(len(scores)), owners] = True
    m = fn(img, txt, owners)
    optimistic = retrieval_metrics_full(img, txt, owners)["i2t_medr"]  # ranks still count ties for the positive
    assert optimistic >= 1
    differs = False
    for k in (1, 5, 10):
        theirs_t2i = (recall_at_k(scores, positive, k) > 0).float().mean().item()
        theirs_i2t = (recall_at_k(scores.T, positive.T, k) > 0).float().mean().item()
        assert (m[f"t2i_r{k}"], m[f"i2t_r{k}"]) == pytest.approx((theirs_t2i, theirs_i2t), abs=1e-6), k
        sim = (img @ txt.T)
        best = sim.masked_fill(owners[None, :] != torch.arange(40)[:, None], float("-inf")).amax(1)
        differs |= float(((sim > best[:, None]).sum(1) < k).float().mean()) != theirs_i2t
    assert differs  # the ties matter here: counting them for the positive gives other figures


def test_recall_at_k_beyond_the_candidates_is_omitted_with_the_reason():
    img, txt, owners = _random_problem(n=3, per_image=2, d=8, seed=7)
    m = retrieval_metrics(img, txt, owners)  # 3 images, 6 captions
    assert "t2i_r5" not in m and "t2i_r10" not in m and "i2t_r10" not in m
    assert "K=5 exceeds the 3 images" in m["omitted"]["t2i_r5"]
    assert "K=10 exceeds the 6 captions" in m["omitted"]["i2t_r10"]
    assert "i2t_r5" in m and "t2i_r1" in m and "trivial" not in m
