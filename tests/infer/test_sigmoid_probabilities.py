"""Probabilities as the model was trained (issue 21, item 5): a sigmoid-trained model gives each
label sigmoid(t * cos + b), equal to what open_clip computes on its export; softmax models keep the
softmax; the API, the CLI and the web API say which kind."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import littune
from littune.cli import main
from littune.infer.export import export_model

from tests.infer.test_open_clip import _images, _run

LABELS = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def sigmoid_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sigmoid")
    return _run(root, ["train.loss=sigmoid"]), root


def test_sigmoid_probabilities_equal_open_clips_on_the_export(sigmoid_run, tmp_path):
    import open_clip

    run, _ = sigmoid_run
    lit = littune.load(run)
    assert lit.probability_kind == "sigmoid" and float(lit.model.logit_bias.detach()) == -3.5
    images = _images(3)
    ours = lit.probabilities(images, LABELS, ["a photo of a {}."])  # (3, 3)
    export_model(lit, tmp_path / "oc", format="open_clip")
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tmp_path / 'oc'}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{tmp_path / 'oc'}")
    model.eval()
    with torch.no_grad():  # open_clip's own SigLIP probabilities: sigmoid(scale * cos + bias)
        img = model.encode_image(torch.stack([preprocess(im) for im in images]), normalize=True)
        txt = model.encode_text(tokenizer([f"a photo of a {x}." for x in LABELS]), normalize=True)
        theirs = torch.sigmoid(model.logit_scale.exp() * img @ txt.T + model.logit_bias)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    assert not torch.allclose(ours.sum(1), torch.ones(3), atol=1e-2)  # per label, not a distribution
    softmax = (model.logit_scale.exp() * img @ txt.T).softmax(-1)
    assert not torch.allclose(ours, softmax, atol=1e-2)  # what littune showed before


def test_softmax_models_keep_the_softmax_and_outputs_say_which(sigmoid_run, tmp_path, capsys):
    run, root = sigmoid_run
    soft = littune.load(_run(tmp_path, []))
    assert soft.probability_kind == "softmax"
    probs = soft.probabilities(_images(2), LABELS)
    torch.testing.assert_close(probs.sum(1), torch.ones(2), atol=1e-5, rtol=0)
    path = tmp_path / "photo.png"
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(path)
    assert main(["classify", "--model", str(run), str(path), "--labels", ",".join(LABELS), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["probabilities"] == "sigmoid"
    assert row["scores"] == pytest.approx(dict(zip(LABELS, littune.load(run).probabilities(str(path), LABELS)[0].tolist())))
    assert main(["classify", "--model", str(run), str(path), "--labels", ",".join(LABELS)]) == 0
    assert "probabilities: sigmoid" in capsys.readouterr().out
