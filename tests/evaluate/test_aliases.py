"""Class-name aliases (``roses,rose;roses;garden rose``) averaged as specified, combined template sets,
and the errors bad alias lists get (file and line named)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from littune.evaluate.classnames import load_class_aliases, load_classnames, read_classnames_file
from littune.evaluate.templates import get_templates
from littune.evaluate.zeroshot import build_classifier

from .test_zeroshot import FakeEncoder


def test_aliases_average_over_every_alias_and_template_without_renormalising_per_alias():
    enc = FakeEncoder({
        "a rose": [2.0, 0.0, 0.0],          # unit (1, 0, 0)
        "the rose": [5.0, 0.0, 0.0],        # unit (1, 0, 0): alias "rose" agrees with itself
        "a garden rose": [0.0, 3.0, 0.0],   # unit (0, 1, 0)
        "the garden rose": [0.0, 0.0, 0.5],  # unit (0, 0, 1): alias "garden rose" disagrees
        "a tulip": [0.0, 1.0, 1.0],         # unit (0, .707, .707)
        "the tulip": [0.0, -1.0, 1.0],      # unit (0, -.707, .707)
    })
    clf = build_classifier(enc, [["rose", "garden rose"], "tulip"], ["a {}", "the {}"], batch_size=4)
    # Rose: the mean of all 4 unit prompts, (1, 1, 0, 0)... = (0.5, 0.25, 0.25), normalised once.
    rose = F.normalize(torch.tensor([0.5, 0.25, 0.25]), dim=0)
    tulip = torch.tensor([0.0, 0.0, 1.0])
    torch.testing.assert_close(clf, torch.stack([rose, tulip]), atol=1e-6, rtol=0)
    # Renormalising each alias' mean first would give (1, 0, 0) and (0, .707, .707) equal weight:
    per_alias = F.normalize(torch.tensor([0.5, 0.5 / 2**0.5, 0.5 / 2**0.5]), dim=0)  # (0.707, 0.5, 0.5)
    assert not torch.allclose(clf[0], per_alias, atol=1e-2)
    # Class-major, then alias, then template; 6 prompts in batches of 4.
    assert enc.calls == [["a rose", "the rose", "a garden rose", "the garden rose"], ["a tulip", "the tulip"]]


def test_one_alias_is_the_plain_name():
    enc = FakeEncoder({"a cat": [1.0, 2.0], "the cat": [3.0, -1.0], "a dog": [0.0, 1.0], "the dog": [1.0, 1.0]})
    torch.testing.assert_close(build_classifier(enc, [["cat"], ["dog"]], ["a {}", "the {}"]),
                               build_classifier(enc, ["cat", "dog"], ["a {}", "the {}"]))


def test_alias_lists_that_cannot_be_told_apart_are_refused():
    enc = FakeEncoder({})
    with pytest.raises(ValueError, match=r"classes 0 and 1 have the same names \['garden rose', 'rose'\]"):
        build_classifier(enc, [["rose", "garden rose"], ["garden rose", "rose"]], ["a {}"])
    with pytest.raises(ValueError, match="duplicate classname 'rose'"):  # results are named by first names
        build_classifier(enc, [["rose", "garden rose"], ["rose", "wild rose"]], ["a {}"])
    with pytest.raises(ValueError, match="classname 0 lists a name twice"):
        build_classifier(enc, [["rose", "rose"]], ["a {}"])
    with pytest.raises(ValueError, match="classname 1 has an empty name"):
        build_classifier(enc, [["rose"], ["tulip", " "]], ["a {}"])
    with pytest.raises(ValueError, match="classname 0 has an empty name"):
        build_classifier(enc, [[]], ["a {}"])


# ---- classnames files -------------------------------------------------------------------------------
def test_classnames_file_with_aliases(tmp_path):
    f = tmp_path / "flowers.csv"
    f.write_text("# folder,name;alias;...\nroses,rose;roses;garden rose\ntulips, tulip \n"
                 "daisy,daisy; common daisy\nprimula,primrose, cowslip\n")
    assert read_classnames_file(f) == {"roses": ["rose", "roses", "garden rose"], "tulips": ["tulip"],
                                       "daisy": ["daisy", "common daisy"], "primula": ["primrose, cowslip"]}
    folders = ["tulips", "roses", "daisy"]
    assert load_class_aliases(folders, f) == [["tulip"], ["rose", "roses", "garden rose"], ["daisy", "common daisy"]]
    assert load_classnames(folders, f) == ["tulip", "rose", "daisy"]  # the first name labels the results
    assert load_class_aliases(["sun_flowers"]) == [["sun flowers"]]  # no file: one name per folder


@pytest.mark.parametrize("line,message", [
    ("roses,rose;;garden rose", r"bad\.csv:2: empty name in 'rose;;garden rose'"),
    ("roses,", r"bad\.csv:2: folder 'roses' has no name"),
    ("roses,rose;", r"bad\.csv:2: empty name in 'rose;'"),
    ("roses, ; ", r"bad\.csv:2: empty name in '; ?'"),
    ("roses,rose;garden rose;rose", r"bad\.csv:2: name 'rose' given twice"),
    (",rose", r"bad\.csv:2: empty folder"),
    ("roses", r"bad\.csv:2: expected 'folder,name'"),
    ("tulips,tulip;rose", r"bad\.csv:2: folder 'tulips' named twice \('tulip' and 'tulip;rose'\)"),
])
def test_bad_alias_lists_name_the_file_and_line(tmp_path, line, message):
    f = tmp_path / "bad.csv"
    f.write_text(f"tulips,tulip\n{line}\n")
    with pytest.raises(ValueError, match=message):
        load_class_aliases(["tulips"], f)


# ---- combined template sets ---------------------------------------------------------------------------
def test_template_sets_combine_with_plus_or_comma_and_repeat_nothing(tmp_path):
    flowers, simple = get_templates("flowers"), get_templates("simple")
    assert get_templates("flowers+simple") == flowers + simple  # no template in common
    assert get_templates("flowers, simple") == get_templates("flowers,simple") == flowers + simple
    # "single" is simple's first template: kept once, where it first appears.
    assert get_templates("single+simple") == simple
    assert get_templates("flowers+single+simple") == flowers + simple
    mine = tmp_path / "mine.txt"
    mine.write_text("a photo of a {}.\na sketch of a {}.\n")
    assert get_templates(f"single+{mine}") == ["a photo of a {}.", "a sketch of a {}."]
    odd = tmp_path / "a+b.txt"  # a file whose own name holds '+' is read whole
    odd.write_text("a drawing of a {}.\n")
    assert get_templates(str(odd)) == ["a drawing of a {}."]


def test_combined_template_errors_name_the_part(tmp_path):
    with pytest.raises(ValueError, match=r"template sets 'flowers\+\+simple': empty entry"):
        get_templates("flowers++simple")
    with pytest.raises(ValueError, match="unknown template set 'nope'"):
        get_templates("flowers+nope")
    bad = tmp_path / "bad.txt"
    bad.write_text("a {}.\nno placeholder\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2:.*no placeholder"):
        get_templates(f"simple+{bad}")


# ---- the zeroshot evaluator reads aliases and combined templates ---------------------------------------
def test_zeroshot_evaluator_uses_aliases_and_combined_templates(tiny_lit_run, tmp_path):
    """The evaluator's numbers equal a hand computation with the alias classifier."""
    import littune
    from littune.encode import encode_texts
    from littune.evaluate.evaluators import create_evaluator
    from littune.evaluate.zeroshot import zeroshot_metrics

    lit = littune.load(tiny_lit_run["run"])
    folders = {}  # the tiny images are captioned "<top colour> above <bottom colour>": class = top colour
    for path, caption in zip(tiny_lit_run["images"], tiny_lit_run["captions"]):
        top = caption.split()[0]
        (tmp_path / "images" / top).mkdir(parents=True, exist_ok=True)
        (tmp_path / "images" / top / path.name).symlink_to(path)
        folders.setdefault(top, []).append(path)
    classes = sorted(folders)
    assert len(classes) >= 3
    names = tmp_path / "names.csv"
    names.write_text("".join(f"{c},{c};{c} colour;{c} above\n" for c in classes))
    templates = ["{}", "a picture: {}", "the colours {}."]
    (tmp_path / "t1.txt").write_text("\n".join(templates[:2]) + "\n")
    (tmp_path / "t2.txt").write_text("\n".join(templates[1:]) + "\n")  # "a picture: {}" in both

    ev = create_evaluator("zeroshot", {"images": str(tmp_path / "images"), "classnames": str(names),
                                       "templates": f"{tmp_path / 't1.txt'}+{tmp_path / 't2.txt'}"},
                          cache_root=tmp_path / "cache", progress=False)
    out = ev.run(lit.model)
    aliases = [[c, f"{c} colour", f"{c} above"] for c in classes]
    assert out["classnames"] == classes and out["aliases"] == aliases and out["n_templates"] == 3

    clf = build_classifier(lambda t: encode_texts(lit.model, t), aliases, templates)
    paths = [p for c in classes for p in folders[c]]
    labels = torch.tensor([i for i, c in enumerate(classes) for _ in folders[c]])
    expected = zeroshot_metrics(lit.embed_images(paths), labels, clf, classes)
    assert out["confusion"] == expected["confusion"] and out["top1"] == pytest.approx(expected["top1"])
    # The aliases matter: first names alone give another classifier.
    assert not torch.allclose(clf, build_classifier(lambda t: encode_texts(lit.model, t), classes, templates))
