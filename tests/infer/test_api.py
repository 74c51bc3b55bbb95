"""littune.load: embeddings, zero-shot probabilities against a hand computation, bad input, threads."""
from __future__ import annotations

import io
import threading

import pytest
import torch
from PIL import Image

import littune
from littune.data.images import BadImage, BadInputLog
from littune.encode import encode_texts
from littune.evaluate.zeroshot import build_classifier
from littune.infer import BadImageWarning, LiT


@pytest.fixture(scope="module")
def lit(tiny_lit_run) -> LiT:
    return littune.load(tiny_lit_run["run"])


def test_load_gives_a_model_on_the_cpu(lit, tiny_lit_run):
    assert isinstance(lit, LiT) and lit.device.type == "cpu"
    assert lit.embed_dim == 64 and lit.temperature > 0
    assert lit.source == str(tiny_lit_run["run"].resolve())
    assert not lit.model.training


def test_load_refuses_what_is_not_a_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        littune.load(tmp_path / "missing")
    with pytest.raises(ValueError, match="not a littune run or export"):
        littune.load(tmp_path)


def test_embed_images_paths_bytes_and_pil_agree(lit, tiny_lit_run):
    paths = tiny_lit_run["images"][:5]
    emb = lit.embed_images(paths)  # (5, E)
    assert emb.shape == (5, lit.embed_dim) and emb.dtype == torch.float32
    assert torch.allclose(emb.norm(dim=-1), torch.ones(5), atol=1e-5)
    from_bytes = lit.embed_images([p.read_bytes() for p in paths])
    from_pil = lit.embed_images([Image.open(p) for p in paths])
    assert torch.allclose(emb, from_bytes, atol=1e-6) and torch.allclose(emb, from_pil, atol=1e-6)
    # One image (not in a list) is a batch of one; batching does not change results.
    assert torch.allclose(lit.embed_images(paths[0]), emb[:1], atol=1e-6)
    assert torch.allclose(lit.embed_images(paths, batch_size=2), emb, atol=1e-5)
    # The same numbers as the model's own forward on the preprocessed pixels.
    with torch.no_grad():
        direct = lit.model.encode_image(lit.pixels(paths))
    assert torch.allclose(emb, direct, atol=1e-6)


def test_embed_texts(lit):
    emb = lit.embed_texts(["red above blue", "green above white"])
    assert emb.shape == (2, lit.embed_dim)
    assert torch.allclose(emb, encode_texts(lit.model, ["red above blue", "green above white"]), atol=1e-6)
    assert torch.allclose(lit.embed_texts("red above blue"), emb[:1], atol=1e-6)


def test_classify_is_a_softmax_over_the_prompt_ensemble(lit, tiny_lit_run):
    """Known answer: softmax(exp(t) * image . classifier), the classifier built by hand."""
    labels = ["red above green", "blue above red", "green above white"]
    templates = ["{}", "a picture: {}", "the colours {}."]
    images = tiny_lit_run["images"][:4]
    probs = lit.probabilities(images, labels, templates)  # (4, 3)
    assert probs.shape == (4, 3)
    assert torch.allclose(probs.sum(dim=1), torch.ones(4), atol=1e-5) and bool((probs > 0).all())
    prompts = [t.replace("{}", c) for c in labels for t in templates]
    text = torch.nn.functional.normalize(lit.embed_texts(prompts).view(3, 3, -1), dim=-1)
    weights = torch.nn.functional.normalize(text.mean(dim=1), dim=-1)  # (3, E)
    assert torch.allclose(weights, build_classifier(lambda t: encode_texts(lit.model, t), labels, templates), atol=1e-5)
    expected = (lit.model.logit_scale.exp() * lit.embed_images(images) @ weights.T).softmax(dim=-1)
    assert torch.allclose(probs, expected.detach(), atol=1e-5)

    result = lit.classify(images, labels, templates)
    assert len(result) == 4
    for row, p in zip(result, probs):
        assert set(row) == set(labels)
        values = list(row.values())
        assert values == sorted(values, reverse=True)  # most probable first
        assert next(iter(row)) == labels[int(p.argmax())]
        assert abs(sum(values) - 1) < 1e-5


def test_classify_learned_the_captions(lit, tiny_lit_run):
    """After a few dozen steps the tiny model picks an image's own caption among all 24 most of the time."""
    caps = tiny_lit_run["captions"]
    top = [next(iter(r)) for r in lit.classify(tiny_lit_run["images"], caps, ["{}"])]
    accuracy = sum(t == c for t, c in zip(top, caps)) / len(caps)
    assert accuracy >= 0.5, accuracy  # chance: 1/24


def test_templates_default_name_file_and_list(lit, tiny_lit_run, tmp_path):
    image, labels = tiny_lit_run["images"][0], ["red above green", "blue above red"]
    default = lit.probabilities(image, labels)
    assert torch.allclose(default, lit.probabilities(image, labels, "simple"))
    f = tmp_path / "t.txt"
    f.write_text("# mine\n{}\na picture: {}\n")
    assert torch.allclose(lit.probabilities(image, labels, str(f)), lit.probabilities(image, labels, ["{}", "a picture: {}"]))
    assert not torch.allclose(default, lit.probabilities(image, labels, ["{}"]))
    assert torch.allclose(lit.probabilities(image, "red above green, blue above red"), default)  # comma string


def test_a_label_may_give_aliases(lit, tiny_lit_run):
    """'red above green;green below red' averages both names' prompts; results keep the label as typed."""
    image, templates = tiny_lit_run["images"][0], ["{}", "a picture: {}"]
    labels = ["red above green;green below red", "blue above red"]
    weights = lit.classifier(labels, templates)  # (2, E)
    names = ["red above green", "green below red"]
    mean = lit.embed_texts([t.replace("{}", n) for n in names for t in templates]).mean(dim=0)  # of unit rows
    torch.testing.assert_close(weights[0], torch.nn.functional.normalize(mean, dim=0), atol=1e-5, rtol=0)
    torch.testing.assert_close(weights[1], lit.classifier(["blue above red", "x"], templates)[0])
    assert not torch.allclose(weights[0], lit.classifier(["red above green", "blue above red"], templates)[0])
    (row,) = lit.classify(image, "red above green;green below red, blue above red", templates)
    assert set(row) == set(labels)
    with pytest.raises(ValueError, match=r"labels: empty name in 'red;;green'"):
        lit.classify(image, ["red;;green", "blue"])
    with pytest.raises(ValueError, match=r"labels: name 'red' given twice"):
        lit.classify(image, "red;red, blue")


def test_templates_combine_with_plus(lit, tiny_lit_run):
    image, labels = tiny_lit_run["images"][0], ["red above green", "blue above red"]
    both = lit.probabilities(image, labels, "flowers+simple")
    from littune.evaluate.templates import get_templates

    assert torch.allclose(both, lit.probabilities(image, labels, get_templates("flowers") + get_templates("simple")))


def test_classify_skips_unreadable_images_and_reports_them(lit, tiny_lit_run, tmp_path):
    # The bad-file policy of embed, index and evaluation: skip, report, go on.
    notes, cut = tmp_path / "notes.jpg", tmp_path / "cut.jpg"
    notes.write_text("not an image")
    data = tiny_lit_run["images"][0].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    good = tiny_lit_run["images"][:2]
    images = [good[0], notes, tmp_path / "missing.jpg", good[1], cut]
    log = BadInputLog()
    out = lit.classify(images, ["a", "b"], bad=log)
    assert [r is None for r in out] == [False, True, True, False, True]  # one entry per image, in order
    for got, image in ((out[0], good[0]), (out[3], good[1])):  # the same answers as each image alone
        alone = lit.classify(image, ["a", "b"])[0]
        assert list(got) == list(alone) and list(got.values()) == pytest.approx(list(alone.values()), abs=1e-6)
    assert [(b.key, b.reason) for b in log] == [("1", "not an image"), ("2", "missing"), ("4", "truncated")]
    assert all(str(images[int(b.key)]) in b.detail for b in log)
    with pytest.warns(BadImageWarning, match="notes.jpg: not an image"):  # no log given: a warning per image
        assert lit.classify([good[0], notes], ["a", "b"])[1] is None
    # Nothing readable: an error (the image's own for one, all of them named for several).
    with pytest.raises(BadImage, match="notes.jpg: not an image"):
        lit.classify(notes, ["a", "b"])
    with pytest.raises(ValueError, match="none of the 2 images.*notes.jpg: not an image.*missing.jpg: missing"):
        lit.classify([notes, tmp_path / "missing.jpg"], ["a", "b"])


def test_bad_input_is_named(lit, tiny_lit_run, tmp_path):
    data = tiny_lit_run["images"][0].read_bytes()
    with pytest.raises(BadImage, match="truncated"):
        lit.embed_images(data[: len(data) // 2])
    with pytest.raises(ValueError, match="labels"):
        lit.classify(tiny_lit_run["images"][0], "cat,,dog")
    with pytest.raises(ValueError, match="labels"):
        lit.classify(tiny_lit_run["images"][0], [])
    with pytest.raises(ValueError, match="duplicate"):
        lit.classify(tiny_lit_run["images"][0], ["cat", "cat"])
    with pytest.raises(ValueError, match="placeholder"):
        lit.classify(tiny_lit_run["images"][0], ["cat", "dog"], ["no slot"])
    with pytest.raises(ValueError, match="no images"):
        lit.embed_images([])


def test_many_threads_get_the_serial_answers(lit, tiny_lit_run):
    images = tiny_lit_run["images"][:8]
    label_sets = [tiny_lit_run["captions"][i:i + 3] for i in range(8)]
    serial = [lit.probabilities(im, ls) for im, ls in zip(images, label_sets)]
    got: dict[int, torch.Tensor] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(3):
                got[i] = lit.probabilities(io.BytesIO(images[i].read_bytes()).getvalue(), label_sets[i])
        except BaseException as e:  # noqa: BLE001 - surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for i in range(8):
        assert torch.allclose(got[i], serial[i], atol=1e-5)
