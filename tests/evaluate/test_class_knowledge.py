"""Class knowledge in prompts: names mapped to WordNet synsets from timm's files, the gloss phrases,
and the zero-shot evaluator's classifier with the knowledge alias in its ensemble."""
from __future__ import annotations

import pytest
import torch

from littune.evaluate.class_knowledge import (add_class_knowledge, hypernym_phrase, load_synsets, synset_of)


@pytest.fixture(scope="module")
def synsets():
    return load_synsets()


def test_timm_files_hold_imagenet21k(synsets):
    assert len(synsets.definitions) == len(synsets.lemmas) > 21_000
    assert len(synsets.in1k) == 1000 and "n01440764" in synsets.in1k  # tench


@pytest.mark.parametrize("folder,names,expected", [
    ("n01440764", ["tench"], "n01440764"),  # a synset folder is its own synset
    ("sunflowers", ["sunflowers"], "n11978233"),  # a plural folder name, singular lemma
    ("daisy", ["daisy"], "n11939491"),
    ("x", ["crane"], None),  # the bird and the machine are both ImageNet-1k classes: no guess
    ("roses", ["rose"], None),  # a colour, a wine, a shrub, none in ImageNet-1k: no guess
    ("x", ["tiger shark"], "n01491361"),
    ("x", ["no such thing"], None),
])
def test_names_map_to_exactly_one_synset_or_none(synsets, folder, names, expected):
    assert synset_of(folder, names, synsets) == expected


@pytest.mark.parametrize("synset,phrase", [
    ("n12024176", "herb"),  # "any of several herbs of the genus Taraxacum having ..."
    ("n01440764", "freshwater dace-like game fish"),  # "freshwater dace-like game fish of Europe ..."
    ("n11939491", "composite plant"),  # "any of numerous composite plants having ..."
    ("n03461385", "marketplace"),  # "a marketplace where groceries are sold"
])
def test_hypernym_phrase_is_the_gloss_genus(synsets, synset, phrase):
    assert hypernym_phrase(synsets.definitions[synset]) == phrase


def test_knowledge_is_added_beside_the_names_and_reported():
    aliases = [["tench"], ["rose", "garden rose"], ["dandelion"]]
    folders = ["n01440764", "roses", "dandelion"]
    assert add_class_knowledge(aliases, folders, "none") == (aliases, {"mode": "none"})
    out, report = add_class_knowledge(aliases, folders, "hypernym")
    assert out == [["tench", "tench, a freshwater dace-like game fish"], ["rose", "garden rose"],
                   ["dandelion", "dandelion, a herb"]]
    assert report == {"mode": "hypernym", "mapped": {"n01440764": "n01440764", "dandelion": "n12024176"},
                      "unmapped": ["roses"]}
    out, _ = add_class_knowledge(aliases, folders, "definition")
    assert out[0][1] == "tench, freshwater dace-like game fish of Europe and western Asia noted for ability " \
                        "to survive outside water"
    with pytest.raises(ValueError, match="knowledge: unknown mode 'hypernyms'"):
        add_class_knowledge(aliases, folders, "hypernyms")


def test_zeroshot_evaluator_ensembles_the_knowledge(tiny_lit_run, tmp_path):
    """The evaluator's classifier equals one built by hand from names plus knowledge aliases."""
    import littune
    from littune.encode import encode_texts
    from littune.evaluate.evaluators import create_evaluator
    from littune.evaluate.zeroshot import build_classifier, zeroshot_metrics

    lit = littune.load(tiny_lit_run["run"])
    tops = sorted({c.split()[0] for c in tiny_lit_run["captions"]})
    synset = dict(zip(tops, ["n01440764", "n12024176", "n11939491", "n03461385", "n01491361"]))
    for path, caption in zip(tiny_lit_run["images"], tiny_lit_run["captions"]):
        folder = tmp_path / "images" / synset[caption.split()[0]]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / path.name).symlink_to(path)
    names = tmp_path / "names.csv"  # the tiny model knows colours: keep them as the class names
    names.write_text("".join(f"{synset[c]},{c}\n" for c in tops))
    folders = sorted(synset[c] for c in tops)
    classes = [next(c for c in tops if synset[c] == f) for f in folders]

    def run(knowledge: str) -> dict:
        return create_evaluator("zeroshot", {"images": str(tmp_path / "images"), "classnames": str(names),
                                             "templates": "simple", "knowledge": knowledge},
                                cache_root=tmp_path / "cache", progress=False).run(lit.model)

    out = run("hypernym")
    expected_aliases, _ = add_class_knowledge([[c] for c in classes], folders, "hypernym")
    assert all(len(a) == 2 for a in expected_aliases)  # every class got its knowledge alias
    assert out["aliases"] == expected_aliases and out["classnames"] == classes
    assert out["knowledge"]["unmapped"] == []
    from littune.evaluate.templates import get_templates

    clf = build_classifier(lambda t: encode_texts(lit.model, t), expected_aliases, get_templates("simple"))
    plain = build_classifier(lambda t: encode_texts(lit.model, t), classes, get_templates("simple"))
    assert not torch.allclose(clf, plain)  # the knowledge changes the classifier
    paths = [p for f in folders for p in sorted((tmp_path / "images" / f).iterdir())]
    labels = torch.tensor([i for i, f in enumerate(folders) for _ in (tmp_path / "images" / f).iterdir()])
    want = zeroshot_metrics(lit.embed_images(paths), labels, clf, classes)
    assert out["confusion"] == want["confusion"] and out["top1"] == pytest.approx(want["top1"])
    assert "knowledge" not in run("none") and "aliases" not in run("none")


def test_unknown_mode_is_refused_when_the_evaluation_is_configured(tmp_path):
    from littune.evaluate.evaluators import create_evaluator

    with pytest.raises(ValueError, match="knowledge: unknown mode 'hypernyms'; choose one of none, hypernym"):
        create_evaluator("zeroshot", {"images": str(tmp_path / "not-there"), "knowledge": "hypernyms"})
