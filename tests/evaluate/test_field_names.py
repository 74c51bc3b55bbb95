"""The field's class names and templates (CLIP's, as open_clip ships them), ImageNet folder layouts,
and prompt identity as the text tower reads it (issue 21, items 1, 2 and 7's names)."""
from __future__ import annotations

import warnings

import pytest
from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

from littune.evaluate.classnames import get_classnames, imagenet_synsets, resolve_classnames
from littune.evaluate.templates import get_templates
from littune.evaluate.zeroshot import build_classifier, check_prompt_identity, token_rows, validate_templates


def test_clip_names_and_templates_equal_open_clips_entry_by_entry():
    names = get_classnames("imagenet")
    assert len(names) == len(IMAGENET_CLASSNAMES) == 1000
    assert [i for i, (a, b) in enumerate(zip(names, IMAGENET_CLASSNAMES)) if a != b] == []
    for ours, theirs in (("clip", OPENAI_IMAGENET_TEMPLATES), ("clip_simple", SIMPLE_IMAGENET_TEMPLATES)):
        got = get_templates(ours)
        assert len(got) == len(theirs), ours
        for name in ("tench", "Cardigan Welsh Corgi", "{c}"):  # the prompts themselves, not only the lists
            assert [t.replace("{}", name) for t in got] == [f(name) for f in theirs], (ours, name)
    assert len(get_templates("clip")) == 80 and len(get_templates("clip_simple")) == 7
    # Today's names stay reachable: timm's first lemma (Cardigan is the corgi at 264).
    timm = get_classnames("imagenet_timm")
    assert timm[264] == "Cardigan" and timm[474] == "cardigan" and sum(a != b for a, b in zip(timm, names)) > 300


def test_imagenet_folder_layouts_get_clips_names(tmp_path):
    synsets = imagenet_synsets()
    # val / Sketch: synset folders, any subset (R and A are 200-class subsets), CLIP's names by default.
    sub = [synsets[i] for i in (1, 264, 985)]
    assert resolve_classnames(sub).labels == ["goldfish", "Cardigan Welsh Corgi", "daisy"]
    assert resolve_classnames(sub, "imagenet_timm").labels == ["goldfish", "Cardigan", "daisy"]
    # V2: folders 0..999 are label indices (in whatever order the folder listing gives).
    v2 = sorted(str(i) for i in range(1000))
    named = resolve_classnames(v2, "imagenet")
    assert resolve_classnames(v2).labels == named.labels  # exactly 0..999: recognised without the option
    assert resolve_classnames(["0", "1", "2"]).labels == ["0", "1", "2"]  # other numbered folders: their names
    assert named.labels[v2.index("985")] == "daisy" and named.labels[v2.index("264")] == "Cardigan Welsh Corgi"
    # The repeats keep their names in prompts and get distinct labels in results.
    assert named.aliases[v2.index("657")] == named.aliases[v2.index("744")] == [["missile"]][0]
    assert named.labels[v2.index("657")] == "missile (657)" and named.labels[v2.index("744")] == "missile (744)"
    assert sorted(named.repeats) == sorted([(v2.index("657"), v2.index("744")), (v2.index("836"), v2.index("837"))])


@pytest.mark.parametrize("folders,message", [
    ([str(i) for i in range(999)], r"0\.\.999.*missing \[999\]"),
    ([str(i) for i in range(1000)] + ["1000"], r"unexpected \['1000'\]"),
    ([str(i) for i in range(999)] + ["0999"], r"unexpected \['0999'\]"),
    (["roses", "tulips"], "neither synset ids"),
    (["n01440764", "n99999999"], "n99999999"),
])
def test_bad_imagenet_folders_are_named(folders, message):
    with pytest.raises(ValueError, match=message):
        resolve_classnames(folders, "imagenet", where="v2")


def test_classnames_file_mapping_two_folders_to_one_name_is_refused(tmp_path):
    f = tmp_path / "names.csv"
    f.write_text("roses,rose\ngarden_roses,rose;garden rose\ntulips,tulip\n")
    with pytest.raises(ValueError, match=r"names\.csv: folders 'roses' and 'garden_roses' are both named 'rose'"):
        resolve_classnames(["roses", "garden_roses", "tulips"], f)
    assert resolve_classnames(["roses", "tulips"], f).labels == ["rose", "tulip"]


@pytest.mark.parametrize("template,message", [("a photo.", "no '{}' placeholder"),
                                              ("a {} next to a {}.", "2 '{}' placeholders")])
def test_templates_need_exactly_one_placeholder(tmp_path, template, message):
    with pytest.raises(ValueError, match=message):
        validate_templates(["a {}.", template])
    f = tmp_path / "t.txt"
    f.write_text(f"a {{}}.\n{template}\n")
    with pytest.raises(ValueError, match=rf"t\.txt:2: .*{message}"):
        get_templates(f)


def test_prompt_identity_after_minilms_tokenizer():
    """CLIP's names through MiniLM's (uncased) tokenizer: 998 distinct rows, exactly the two known
    pairs, one warning; timm's names collide at Cardigan/cardigan, which is an error naming both."""
    from littune.towers.text_hf import hf_tokenizer, minilm_path

    rows = token_rows(hf_tokenizer(str(minilm_path()), 64))
    names = get_classnames("imagenet")
    ids = rows(names)
    assert len(set(ids)) == 998
    firsts = {}
    pairs = [(firsts[r], i) for i, r in enumerate(ids) if firsts.setdefault(r, i) != i]
    assert pairs == [(657, 744), (836, 837)]
    classes = [[n] for n in names]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_prompt_identity(rows, classes, ["a photo of a {}."], repeats=[(657, 744), (836, 837)])
    assert len(caught) == 1 and "'missile' (657) and 'missile' (744)" in str(caught[0].message)
    assert "'sunglasses' (836) and 'sunglasses' (837)" in str(caught[0].message)
    with pytest.raises(ValueError, match=r"classes 'missile' \(657\) and 'missile' \(744\)"):
        check_prompt_identity(rows, classes, ["a photo of a {}."])  # not allowed: an error
    timm = [[n] for n in get_classnames("imagenet_timm")]
    with pytest.raises(ValueError, match=r"'Cardigan' \(264\) and 'cardigan' \(474\).*classnames file"):
        check_prompt_identity(rows, timm, ["a photo of a {}.", "itap of a {}."])
    # build_classifier runs the check before any prompt is embedded.
    with pytest.raises(ValueError, match="'Cardigan' .* and 'cardigan'"):
        build_classifier(lambda t: 1 / 0, [["Cardigan"], ["cardigan"]], ["a {}."], tokenize=rows)
