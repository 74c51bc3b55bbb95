"""Zero-shot inputs: the exact errors bad class names and templates get, class-name repeats, the
prompt-identity check through a toy tokenizer, and ``token_rows`` (padding dropped, 4096-text chunks).

Messages are matched whole (``^...$``): they are what a user reads when a classnames file is wrong."""
from __future__ import annotations

import re
import sys
import warnings

import pytest
import torch

from littune.evaluate.zeroshot import (
    build_classifier,
    check_prompt_identity,
    token_rows,
    validate_templates,
    zeroshot_metrics,
)

from .test_zeroshot import FakeEncoder


def whole(message: str) -> str:
    return "^" + re.escape(message) + "$"


def lower_words(texts):
    """An uncased toy tokenizer as ``token_rows`` gives it: each lower-cased word is one token id."""
    vocab: dict[str, int] = {}
    return [tuple(vocab.setdefault(w, len(vocab) + 1) for w in t.lower().split()) for t in texts]


def encoder(texts):
    """Distinct unit-ish rows per prompt: enough for the validation paths below."""
    return torch.stack([torch.tensor([1.0 + len(t), float(sum(map(ord, t)) % 7), 1.0]) for t in texts])


# ---- templates -----------------------------------------------------------------------------------------
def test_template_errors_are_exact():
    with pytest.raises(TypeError, match=whole("templates must be a list of strings, not a single string")):
        validate_templates("a {}.")
    with pytest.raises(ValueError, match=whole(
            "templates is empty; need at least one prompt template like 'a photo of a {}.'")):
        validate_templates([])
    with pytest.raises(ValueError, match=whole("template 1 ('a photo.') has no '{}' placeholder for the class name")):
        validate_templates(["a {}.", "a photo."])
    with pytest.raises(ValueError, match=whole(
            "template 1 ('a {} next to a {}.') has 2 '{}' placeholders; give exactly one")):
        validate_templates(["a {}.", "a {} next to a {}."])
    assert validate_templates(("a {}.", "{} here")) == ["a {}.", "{} here"]  # any sequence, as a list


# ---- class names as build_classifier reads them (aliases) -------------------------------------------------
def test_alias_errors_are_exact():
    enc = FakeEncoder({})
    with pytest.raises(TypeError, match=whole(
            "classnames must be a list of strings or of alias lists, not a single string")):
        build_classifier(enc, "cat", ["a {}"])
    with pytest.raises(ValueError, match=whole("classnames is empty; need at least one class")):
        build_classifier(enc, [], ["a {}"])
    with pytest.raises(ValueError, match=whole(
            "classname 1 has an empty name or is not a string: ['tulip', ' ']")):
        build_classifier(enc, ["rose", ["tulip", " "]], ["a {}"])
    with pytest.raises(ValueError, match=whole("classname 0 has an empty name or is not a string: []")):
        build_classifier(enc, [[]], ["a {}"])
    with pytest.raises(ValueError, match=whole("classname 0 lists a name twice: ['rose', 'rose']")):
        build_classifier(enc, [["rose", "rose"]], ["a {}"])
    with pytest.raises(ValueError, match=whole(
            "classes 1 and 2 have the same names ['garden rose', 'rose']")):
        build_classifier(enc, ["tulip", ["rose", "garden rose"], ["garden rose", "rose"]], ["a {}"])
    assert enc.calls == []  # every check runs before a prompt is embedded


def test_alias_lists_reach_the_encoder_class_major():
    enc = FakeEncoder({"a rose": [1.0, 0.0], "a garden rose": [0.0, 1.0], "a tulip": [0.0, -2.0]})
    clf = build_classifier(enc, [("rose", "garden rose"), "tulip"], ["a {}"])
    torch.testing.assert_close(clf, torch.tensor([[2**-0.5, 2**-0.5], [0.0, -1.0]]), atol=1e-6, rtol=0)
    assert enc.calls == [["a rose", "a garden rose", "a tulip"]]


def test_listed_repeats_may_share_names_and_others_may_not():
    # CLIP's list names two classes 'missile': allowed only for the listed pair, in either order.
    clf = build_classifier(encoder, ["missile", "tank", "missile"], ["a {}"], repeats=[(2, 0)])
    assert clf.shape == (3, 3) and torch.equal(clf[0], clf[2]) and not torch.equal(clf[0], clf[1])
    clf = build_classifier(encoder, [["missile", "rocket"], "tank", ["rocket", "missile"]], ["a {}"],
                           repeats=[(0, 2)])
    torch.testing.assert_close(clf[0], clf[2])  # the same prompts, summed in another order
    with pytest.raises(ValueError, match=whole("classes 0 and 2 have the same names ['missile', 'rocket']")):
        build_classifier(encoder, [["missile", "rocket"], "tank", ["rocket", "missile"]], ["a {}"],
                         repeats=[(0, 1)])
    with pytest.raises(ValueError, match=whole("classes 0 and 2 have the same names ['missile']")):
        build_classifier(encoder, ["missile", "tank", "missile"], ["a {}"], repeats=[(0, 1)])
    with pytest.raises(ValueError, match=whole("duplicate classname 'missile' at indices 0 and 2")):
        build_classifier(encoder, ["missile", "tank", "missile"], ["a {}"])


# ---- class names as zeroshot_metrics reads them ------------------------------------------------------------
def test_metric_classname_errors_are_exact():
    images, labels, clf = torch.eye(2), torch.tensor([0, 1]), torch.eye(2)
    with pytest.raises(TypeError, match=whole("classnames must be a list of strings, not a single string")):
        zeroshot_metrics(images, labels, clf, "ab")
    with pytest.raises(ValueError, match=whole("classnames is empty; need at least one class")):
        zeroshot_metrics(images, labels, clf, [])
    with pytest.raises(ValueError, match=whole("classname 1 is empty or not a string: ' '")):
        zeroshot_metrics(images, labels, clf, ["a", " "])
    with pytest.raises(ValueError, match=whole("classname 0 is empty or not a string: 3")):
        zeroshot_metrics(images, labels, clf, [3, "b"])
    with pytest.raises(ValueError, match=whole("duplicate classname 'b' at indices 1 and 2")):
        zeroshot_metrics(torch.eye(3), torch.tensor([0, 1, 2]), torch.eye(3), ["a", "b", "b"])


# ---- prompt identity through the tower's tokenizer ---------------------------------------------------------
def test_distinct_prompts_pass_and_alias_multisets_are_compared():
    check_prompt_identity(lower_words, [["cat"], ["dog"], ["hot dog"]], ["a {}.", "the {}"])
    # The same prompts in another alias order are the same row (the mean ignores order) ...
    with pytest.raises(ValueError, match=r"^classes 'rose' \(0\) and 'Garden Rose' \(1\) give the same prompts"):
        check_prompt_identity(lower_words, [["rose", "garden rose"], ["Garden Rose", "ROSE"]], ["a {}"])
    # ... but the same names with different counts of prompts are not.
    check_prompt_identity(lower_words, [["rose", "garden rose"], ["rose"]], ["a {}", "the {}"])


def test_a_collision_is_an_error_naming_both_labels():
    message = ("classes 'dog' (1) and 'Dog' (2) give the same prompts to this text tower (same tokens after "
               "its tokenizer and canonicalisation), so one could never be predicted; name them apart in a "
               "classnames file (folder,name;alias lines), e.g. 'Dog (2)'")
    with pytest.raises(ValueError, match=whole(message)):
        check_prompt_identity(lower_words, [["cat"], ["dog"], ["Dog"]], ["a {}.", "the {}"])
    # Given labels name the classes (default: each class's first name).
    with pytest.raises(ValueError, match=r"^classes 'hound' \(1\) and 'Hound' \(2\) give .* e\.g\. 'Hound \(2\)'$"):
        check_prompt_identity(lower_words, [["cat"], ["dog", "hound"], ["Dog", "HOUND"]], ["a {}"],
                              labels=("cat", "hound", "Hound"))


def test_allowed_repeats_warn_once_and_later_collisions_still_fail():
    classes = [["missile"], ["Missile"], ["tank"], ["sunglasses"], ["SUNGLASSES"]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_prompt_identity(lower_words, classes, ["a {}"], repeats=[(1, 0), (3, 4)])
    assert len(caught) == 1 and caught[0].category is UserWarning
    assert str(caught[0].message) == (
        "CLIP's ImageNet names repeat for 'missile' (0) and 'Missile' (1); 'sunglasses' (3) and 'SUNGLASSES' (4): "
        "kept verbatim as published figures use them (identical classifier rows)")
    assert not caught[0].filename.endswith("zeroshot.py")  # attributed to a caller, not to the check's own line
    with pytest.raises(ValueError, match=r"^classes 'sunglasses' \(3\) and 'SUNGLASSES' \(4\)"):
        check_prompt_identity(lower_words, classes, ["a {}"], repeats=[(1, 0)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_prompt_identity(lower_words, [["cat"], ["dog"]], ["a {}"], repeats=[(0, 1)])  # no collision
    assert caught == []


def test_build_classifier_checks_identity_with_the_tokenizer_it_is_given():
    with pytest.raises(ValueError, match=r"^classes 'cat' \(0\) and 'CAT' \(1\)"):
        build_classifier(lambda t: 1 / 0, ["cat", "CAT"], ["a {}"], tokenize=lower_words)
    clf = build_classifier(encoder, ["cat", "CAT"], ["a {}"])  # no tokenizer: only the exact names are compared
    assert clf.shape == (2, 3)


# ---- token_rows ---------------------------------------------------------------------------------------------
class PaddingTokenizer:
    """A littune tokenizer stand-in: ids 1.. per word, right-padded with 0 to the longest text (width 5
    at least, so the (B, T) shape is never square by accident); records each call's batch size."""

    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, texts):
        self.calls.append(len(texts))
        rows = [[len(w) for w in t.split()] for t in texts]
        width = max(5, max(map(len, rows)))
        ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        return {"input_ids": ids, "attention_mask": mask}


def test_token_rows_drop_padding():
    tok = PaddingTokenizer()
    rows = token_rows(tok)(["a photo", "the big red car", "x"])
    assert rows == [(1, 5), (3, 3, 3, 3), (1,)]
    assert tok.calls == [3]


def test_token_rows_chunks_4096_texts_at_a_time_and_keeps_every_row_in_order():
    texts = ["w" * (1 + i % 9) + " " + "v" * (1 + i // 9 % 9) for i in range(4100)]
    tok = PaddingTokenizer()
    rows = token_rows(tok)(texts)
    assert tok.calls == [4096, 4]
    assert rows == [(1 + i % 9, 1 + i // 9 % 9) for i in range(4100)]


def test_the_repeats_warning_names_the_line_that_called_build_classifier():
    """Through build_classifier (and torch's no_grad) the warning points at this file, the
    caller's line, not at zeroshot.py or at torch's no_grad wrapper."""
    enc = FakeEncoder({"a missile": [1.0, 0.0], "a Missile": [1.0, 0.0], "a tank": [0.0, 1.0]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        w = build_classifier(enc, ["missile", "Missile", "tank"], ["a {}"], tokenize=lower_words, repeats=[(0, 1)])
    assert [c.category for c in caught] == [UserWarning]
    assert (caught[0].filename, caught[0].lineno) == (__file__, line)
    assert not w.requires_grad and w.shape == (3, 2)
