"""Zero-shot classifier, metrics, template sets and class names."""

import pytest
import torch
import torch.nn.functional as F

from littune.evaluate.classnames import (
    get_classnames,
    imagenet_classnames,
    imagenet_synsets,
    load_classnames,
    synset_classnames,
)
from littune.evaluate.templates import get_templates, list_template_sets
from littune.evaluate.zeroshot import build_classifier, zeroshot_metrics


class FakeEncoder:
    """encode_texts stand-in: known strings -> known (unnormalised) vectors; records calls."""

    def __init__(self, table):
        self.table = {k: torch.tensor(v, dtype=torch.float32) for k, v in table.items()}
        self.calls = []

    def __call__(self, texts):
        self.calls.append(list(texts))
        return torch.stack([self.table[t] for t in texts])


def test_prompt_ensemble_is_mean_of_normalised_then_renormalised():
    enc = FakeEncoder({
        "a cat": [3.0, 4.0, 0.0],   # unit: (0.6, 0.8, 0)
        "the cat": [0.0, 0.0, 2.0],  # unit: (0, 0, 1)
        "a dog": [0.0, 5.0, 0.0],   # unit: (0, 1, 0)
        "the dog": [0.0, 0.0, -0.5],  # unit: (0, 0, -1)
    })
    clf = build_classifier(enc, ["cat", "dog"], ["a {}", "the {}"], batch_size=3)
    expected = torch.tensor([[0.3, 0.4, 0.5], [0.0, 0.5, -0.5]])
    expected = expected / expected.norm(dim=1, keepdim=True)  # cat: /sqrt(0.5), dog: /sqrt(0.5)
    torch.testing.assert_close(clf, expected, atol=1e-6, rtol=0)
    # Averaging raw vectors first would give a different direction for "cat".
    raw = F.normalize(torch.tensor([1.5, 2.0, 1.0]), dim=0)
    assert not torch.allclose(clf[0], raw, atol=1e-3)
    # All 4 prompts, class-major, in ceil(4 / 3) = 2 calls.
    assert enc.calls == [["a cat", "the cat", "a dog"], ["the dog"]]


def test_template_validation_and_inputs():
    enc = FakeEncoder({"a cat": [1.0, 0.0]})
    with pytest.raises(ValueError, match="'a photo'"):
        build_classifier(enc, ["cat"], ["a {}", "a photo"])
    with pytest.raises(ValueError, match="templates is empty"):
        build_classifier(enc, ["cat"], [])
    with pytest.raises(ValueError, match="classnames is empty"):
        build_classifier(enc, [], ["a {}"])
    with pytest.raises(ValueError, match="duplicate classname 'cat'"):
        build_classifier(enc, ["cat", "cat"], ["a {}"])
    with pytest.raises(ValueError, match="encode_texts returned"):
        build_classifier(lambda t: torch.zeros(1, 2), ["cat", "dog"], ["a {}"])


def _toy_problem():
    """7 classes, one-hot classifier, images whose logits put the true class at known ranks."""
    classes = [f"c{i}" for i in range(7)]
    classifier = torch.eye(7)
    logits = torch.tensor([
        [9, 1, 2, 3, 4, 5, 6],  # true 0 at rank 0 -> top1 and top5 hit, pred 0
        [1, 8, 9, 2, 3, 4, 5],  # true 1 at rank 1 -> top5 hit, pred 2
        [7, 6, 5, 4, 3, 2, 1],  # true 4 at rank 4 -> top5 hit, pred 0
        [2, 3, 4, 5, 6, 7, 1],  # true 6 at rank 6 -> miss, pred 5
    ], dtype=torch.float32)
    labels = torch.tensor([0, 1, 4, 6])
    return classes, classifier, logits, labels


def test_zeroshot_exact_metrics():
    classes, clf, images, labels = _toy_problem()
    m = zeroshot_metrics(images, labels, clf, classes, return_predictions=True)
    assert m["top1"] == 0.25
    assert m["top5"] == 0.75 and "top5_k" not in m
    assert m["n"] == 4 and m["n_classes"] == 7
    assert m["predictions"] == [0, 2, 0, 5]
    assert m["per_class"] == {"c0": 1.0, "c1": 0.0, "c4": 0.0, "c6": 0.0}
    assert m["mean_per_class"] == 0.25
    expected = [[0] * 7 for _ in range(7)]
    expected[0][0] = expected[1][2] = expected[4][0] = expected[6][5] = 1
    assert m["confusion"] == expected


def test_no_top5_below_5_classes_and_per_class_means():
    # With 3 classes top-5 is undefined (CLIP_benchmark: NaN): omitted, with the reason.
    clf = torch.eye(3)
    images = torch.tensor([[1.0, 0, 0], [0.9, 0.1, 0], [0, 0, 1.0], [0, 1.0, 0.5]])
    m = zeroshot_metrics(images, torch.tensor([0, 1, 2, 1]), clf, ["a", "b", "c"])
    assert "top5" not in m and "K=5 exceeds the 3 classes" in m["omitted"]["top5"]
    assert m["top1"] == 0.75
    assert m["per_class"] == {"a": 1.0, "b": 0.5, "c": 1.0}
    assert m["mean_per_class"] == pytest.approx(2.5 / 3)
    assert m["confusion"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert "predictions" not in m


def test_top5_at_5_classes_is_kept_for_parity_and_marked_trivial():
    g = torch.Generator().manual_seed(0)
    images, labels = torch.randn(30, 5, generator=g), torch.randint(0, 5, (30,), generator=g)
    m = zeroshot_metrics(images, labels, torch.eye(5), list("abcde"))
    assert m["top5"] == 1.0 and "every query is a hit by construction" in m["trivial"]["top5"]
    classes, clf, toy, labels = _toy_problem()
    assert "trivial" not in zeroshot_metrics(toy, labels, clf, classes)  # 7 classes: top-5 means something


def test_fewer_than_two_classes_is_refused():
    with pytest.raises(ValueError, match="at least 2 classes, got 1"):
        zeroshot_metrics(torch.ones(3, 2), torch.zeros(3), torch.tensor([[1.0, 0.0]]), ["only"])


def test_metrics_equal_clip_benchmarks_own_functions():
    """acc1 / acc5 from CLIP_benchmark 1.6.2's ``accuracy`` (its float() on a one-element array is
    wrapped for numpy 2) and mean per-class recall from the ``balanced_accuracy_score`` it calls."""
    import numpy as np
    from sklearn.metrics import balanced_accuracy_score

    from .clip_benchmark_ref import accuracy_numpy2

    g = torch.Generator().manual_seed(1)
    c = 12
    clf = F.normalize(torch.randn(c, 16, generator=g), dim=1)
    labels = torch.randint(0, c - 1, (200,), generator=g)  # the last class has no test image
    images = F.normalize(clf[labels] + 1.2 * torch.randn(200, 16, generator=g), dim=1)
    images[:20] = torch.randint(-1, 2, (20, 16), generator=g).float()  # some exact ties too
    m = zeroshot_metrics(images, labels, clf, [f"c{i}" for i in range(c)])
    logits = 100.0 * images @ clf.T
    with accuracy_numpy2() as zc:
        acc1, acc5 = zc.accuracy(logits, labels, topk=(1, 5))
    assert (m["top1"], m["top5"]) == pytest.approx((acc1, acc5), abs=1e-9)
    with pytest.warns(UserWarning, match="y_pred contains classes not in y_true"):  # sklearn on the empty class
        theirs = balanced_accuracy_score(labels, logits.argmax(axis=1))
    assert m["mean_per_class"] == pytest.approx(theirs, abs=1e-12)
    assert 0.2 < acc1 < acc5 < 1.0 and np.isfinite(m["mean_per_class"])


# ---------------------------------------------------------------- templates


def test_builtin_template_sets():
    assert {"single", "simple", "clip_imagenet", "flowers"} <= set(list_template_sets())
    assert get_templates("single") == ["a photo of a {}."]
    big = get_templates("clip_imagenet")
    assert 20 <= len(big) <= 80 and len(set(big)) == len(big)
    assert "a bad photo of a {}." in big
    assert "a photo of a {}, a type of flower." in get_templates("flowers")
    for name in list_template_sets():
        assert all("{}" in t for t in get_templates(name))


def test_template_file(tmp_path):
    f = tmp_path / "mine.txt"
    f.write_text("# my prompts\n\na sketch of a {}.\n  a {} in the wild.  \n")
    assert get_templates(str(f)) == ["a sketch of a {}.", "a {} in the wild."]
    bad = tmp_path / "bad.txt"
    bad.write_text("a {}.\n# comment\nno placeholder here\n")
    with pytest.raises(ValueError, match=r"bad\.txt:3:.*no placeholder here"):
        get_templates(bad)
    with pytest.raises(ValueError, match="unknown template set 'nope'"):
        get_templates("nope")


# ---------------------------------------------------------------- class names


def test_imagenet_classnames():
    names = imagenet_classnames()  # CLIP's list: two names repeat (test_field_names.py)
    assert len(names) == 1000 and len(set(names)) == 998
    assert names[985] == "daisy" and names[0] == "tench"
    timm = imagenet_classnames("timm")
    assert len(set(timm)) == 1000 and timm[264] == "Cardigan" and names[264] == "Cardigan Welsh Corgi"
    assert get_classnames("imagenet") == names
    assert synset_classnames(["n01440764", imagenet_synsets()[985]]) == ["tench", "daisy"]
    with pytest.raises(ValueError, match="n99999999"):
        synset_classnames(["n99999999"])


def test_load_classnames(tmp_path):
    assert load_classnames(["barbeton_daisy", "rose"]) == ["barbeton daisy", "rose"]
    # ImageNet-style folders are named automatically.
    assert load_classnames(["n01440764"]) == ["tench"]
    f = tmp_path / "names.csv"
    f.write_text("# folder,name\nf1,pink primrose\nf2,tench, Tinca tinca\nunused,x\n")
    assert load_classnames(["f2", "f1"], str(f)) == ["tench, Tinca tinca", "pink primrose"]
    with pytest.raises(ValueError, match=r"no name for 2 folder\(s\): f3, f4"):
        load_classnames(["f1", "f3", "f4"], str(f))
    bad = tmp_path / "bad.csv"
    bad.write_text("f1,ok\njust_a_folder\n")
    with pytest.raises(ValueError, match=r"bad\.csv:2"):
        load_classnames(["f1"], str(bad))
