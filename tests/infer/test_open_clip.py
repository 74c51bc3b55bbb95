"""littune export --format open_clip: open_clip opens the folder offline and gives littune's embeddings.

Tiny towers (timm's random-init test_vit, a 2-layer BERT) cover every head, pooling and loss open_clip
can express, and every refusal; the real towers (the packaged EfficientNet-Lite0 and MiniLM) are
checked on real photos and captions from ../shared/data, preprocessed by open_clip's own transform.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import littune
from littune.cli import main
from littune.encode import encode_texts
from littune.evaluate.templates import get_templates
from littune.evaluate.zeroshot import build_classifier
from littune.infer.export import export_model
from littune.infer.open_clip_export import NotRepresentable
from littune.infer.open_clip_model import load_model, load_open_clip
from littune.runs import save_model
from littune.train import load_config, to_yaml

from tests.cache.tiny_data import save_tower_weights
from tests.towers.tiny import tiny_hf_tokenizer

TEXTS = ["red above blue", "a dog runs on the grass", "two people ride bikes down a hill and a very long tail"]
OVERLAY = "model.image.crop_pct=1.0"  # open_clip's transform crops nothing extra


def _tiny_text(folder: Path, kind: str = "bert") -> Path:
    """A 2-layer BERT (or RoBERTa) with a WordPiece tokenizer, saved as a Hugging Face folder."""
    import transformers as tr

    tok = tiny_hf_tokenizer()
    torch.manual_seed(1)
    config, model = {"bert": (tr.BertConfig, tr.BertModel), "roberta": (tr.RobertaConfig, tr.RobertaModel)}[kind]
    text = model(config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=0))
    text.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _run(root: Path, overrides: list[str], *, text_kind: str = "bert") -> Path:
    """A run directory (config.yaml + weights) of a tiny LiT model: timm test_vit + a tiny BERT / RoBERTa."""
    weights = root / "tower.safetensors"
    if not weights.is_file():
        save_tower_weights(weights)
    text = root / text_kind if (root / text_kind).is_dir() else _tiny_text(root / text_kind, text_kind)
    cfg = load_config(None, ["model.image.name=timm:test_vit", "model.image.pretrained=false",
                             f"model.image.checkpoint={weights}", OVERLAY, f"model.text.name=hf:{text}",
                             "model.text.context_length=16", "model.text.head_bias=false",
                             "model.init_temperature=17", "data.train=flickr8k:/data/flickr8k:train", *overrides])
    torch.manual_seed(0)
    model = cfg.model.build()
    with torch.no_grad():  # trained-looking heads and bias: nothing is left at its initial value
        for p in [*model.image_head.parameters(), *model.text_head.parameters()]:
            p.normal_(0, 0.2)
        model.logit_bias.fill_(-3.5)
    run = root / "run"
    shutil.rmtree(run, ignore_errors=True)
    save_model(model, run)
    (run / "config.yaml").write_text(to_yaml(cfg))
    return run


def _images(n: int = 4) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    sizes = [(160, 160), (200, 170), (170, 230), (300, 160)]
    out = []
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        base = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)  # smooth photos: a blown-up 4x4 pattern
        out.append(Image.fromarray(base).resize((w, h), Image.BILINEAR))
    return out


def _open_clip_embeddings(folder: Path, images, texts):
    """What an open_clip user gets: the folder's own transform and tokenizer on raw images and strings."""
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    model.eval()
    with torch.no_grad():
        img = model.encode_image(torch.stack([preprocess(im) for im in images]), normalize=True)
        txt = model.encode_text(tokenizer(texts), normalize=True)
    return model, img, txt


@pytest.mark.parametrize("variant", [
    dict(name="mean-linear", overrides=[]),
    dict(name="first-mlp-sigmoid", overrides=["model.text.pooling=first", "model.text.head=mlp", "train.loss=sigmoid",
                                               "model.text.head_dropout=0.1"]),  # dropout: off at eval
    dict(name="image-linear", overrides=["model.image.head=linear", "model.embed_dim=48"]),
    dict(name="roberta-no-text-head", text_kind="roberta",
         overrides=["model.image.head=linear", "model.image.head_bias=false", "model.embed_dim=32",
                    "model.text.head=none"]),
    dict(name="image-mlp", overrides=["model.image.head=mlp", "model.image.head_hidden=96", "model.embed_dim=48",
                                      "model.image.head_bias=false", "model.text.head=mlp"]),
], ids=lambda v: v["name"])
def test_open_clip_gives_littune_embeddings(tmp_path, variant):
    lit = littune.load(_run(tmp_path, variant["overrides"], text_kind=variant.get("text_kind", "bert")))
    out = tmp_path / "oc"
    meta = export_model(lit, out, format="open_clip")
    assert {"open_clip_config.json", "open_clip_model.safetensors", "config.json", "tokenizer.json", "README.md",
            "metrics.json"} <= {p.name for p in out.iterdir()}
    images = _images()
    model, img, txt = _open_clip_embeddings(out, images, TEXTS)
    assert torch.allclose(img, lit.embed_images(images), atol=1e-5), (img - lit.embed_images(images)).abs().max()
    assert torch.allclose(txt, lit.embed_texts(TEXTS), atol=1e-5), (txt - lit.embed_texts(TEXTS)).abs().max()
    assert float(model.logit_scale.detach()) == float(lit.model.logit_scale.detach())  # log space in both
    sigmoid = lit.cfg.train.loss == "sigmoid"
    assert (model.logit_bias is not None) == sigmoid and meta["loss"] == lit.cfg.train.loss
    if sigmoid:
        assert float(model.logit_bias.detach()) == pytest.approx(-3.5)
    # The eval harness reads the same folder through open_clip and agrees with the littune model.
    adapted = load_model(out)  # a folder with open_clip_config.json, as local-dir:DIR
    assert torch.allclose(encode_texts(adapted, TEXTS), lit.embed_texts(TEXTS), atol=1e-5)
    assert adapted.temperature == pytest.approx(lit.temperature)


def test_state_names_follow_open_clip(tmp_path):
    from safetensors.torch import load_file

    lit = littune.load(_run(tmp_path, ["model.image.head=linear", "model.embed_dim=48", "model.image.head_bias=true"]))
    export_model(lit, tmp_path / "oc", format="open_clip")
    state = load_file(str(tmp_path / "oc" / "open_clip_model.safetensors"))
    heads = {k for k in state if not k.startswith(("visual.trunk.", "text.transformer."))}
    assert heads == {"visual.head.proj.weight", "visual.head.proj.bias", "text.proj.weight", "logit_scale"}
    assert not any(k.startswith(("visual.trunk.head.", "text.transformer.pooler.")) for k in state)
    cfg = json.loads((tmp_path / "oc" / "open_clip_config.json").read_text())
    assert {"timm_model_name": "test_vit", "timm_pool": "token", "timm_proj": "linear", "timm_proj_bias": True,
            "image_size": 160}.items() <= cfg["model_cfg"]["vision_cfg"].items()
    assert cfg["model_cfg"]["text_cfg"]["hf_pooler_type"] == "mean_pooler"
    assert cfg["preprocess_cfg"]["size"] == 160 and cfg["preprocess_cfg"]["resize_mode"] == "shortest"
    assert "init_logit_bias" not in cfg["model_cfg"]  # softmax model: open_clip has no logit_bias


@pytest.mark.parametrize("overrides, part, fix", [
    (["model.text.head_bias=true"], "text head has a bias", "model.text.head_bias=false"),
    (["model.text.name=scratch", "model.text.tokenizer=minilm"], "text tower is littune's from-scratch",
     "model.text.name=minilm"),
    (["model.text.pooling=max"], "pools with 'max'", "model.text.pooling=mean"),
    (["model.text.head=mlp", "model.text.head_depth=3"], "text head is an MLP of 3 layers", "head_depth=2"),
    (["model.image.head=mlp", "model.embed_dim=48"], "image head is an MLP", "model.image.head_hidden=96"),
    (["model.image.crop_pct=0.875"], "crop_pct 0.875", "crop_pct=1.0"),
], ids=["text-bias", "scratch", "max-pooling", "deep-mlp", "image-mlp-width", "crop_pct"])
def test_unrepresentable_models_are_refused_before_writing(tmp_path, overrides, part, fix):
    lit = littune.load(_run(tmp_path, overrides))
    out = tmp_path / "oc"
    with pytest.raises(NotRepresentable, match="cannot export as open_clip") as e:
        export_model(lit, out, format="open_clip")
    assert part in str(e.value) and fix in str(e.value)
    assert not out.exists() and not (tmp_path / "oc.tmp").exists()  # nothing was written
    assert main(["export", "--model", str(tmp_path / "run"), "--out", str(out), "--format", "open_clip"]) == 2
    assert not out.exists()


def test_every_part_that_does_not_fit_is_named(tmp_path, capsys):
    """The demo's recipe before its two changes: both are named in one answer."""
    run = _run(tmp_path, ["model.text.head_bias=true", "model.image.crop_pct=0.875"])
    assert main(["export", "--model", str(run), "--out", str(tmp_path / "oc"), "--format", "open_clip"]) == 2
    err = capsys.readouterr().err
    assert "crop_pct=1.0" in err and "model.text.head_bias=false" in err and not (tmp_path / "oc").exists()


def test_hf_image_tower_is_refused(tmp_path):
    from tests.towers.tiny import HF_IMAGE_BUILDERS

    vision, proc = HF_IMAGE_BUILDERS["dinov2"]()
    vision.save_pretrained(tmp_path / "vision")
    proc.save_pretrained(tmp_path / "vision")
    lit = littune.load(_run(tmp_path, [f"model.image.name=hf:{tmp_path / 'vision'}", "model.image.checkpoint=null",
                                       "model.image.kwargs={}"]))
    with pytest.raises(NotRepresentable, match="image tower 'hf:.*' is not a timm model.*image.name=efficientnet"):
        export_model(lit, tmp_path / "oc", format="open_clip")


def test_output_folder_and_tampering(tmp_path, capsys):
    run = _run(tmp_path, [])
    out = tmp_path / "oc"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = ["export", "--model", str(run), "--out", str(out), "--format", "open_clip"]
    assert main(args) == 2 and "not empty" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"  # refused: nothing touched
    assert main([*args, "--force", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["open_clip"] == f"local-dir:{out}" and not (out / "notes.txt").exists()
    with pytest.raises(FileExistsError, match="the model itself"):  # --force never deletes the model it reads
        export_model(littune.load(run), tmp_path, format="open_clip", force=True)
    # A moved folder still loads in littune (its text files travel with it) ...
    moved = tmp_path / "moved"
    out.rename(moved)
    assert torch.allclose(encode_texts(load_open_clip(moved), TEXTS), littune.load(run).embed_texts(TEXTS),
                          atol=1e-5)
    with pytest.raises(ValueError, match="is an open_clip model: `littune eval"):
        littune.load(moved)  # littune.load reads littune's own format; it says what reads this one
    # ... and an edited one is refused, naming what changed.
    cfg_path = moved / "open_clip_config.json"
    original = cfg_path.read_text()
    cfg = json.loads(original)
    cfg["model_cfg"]["text_cfg"]["hf_pooler_type"] = "cls_last_hidden_state_pooler"
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="model_cfg or preprocess_cfg changed after export"):
        load_open_clip(moved)
    cfg_path.write_text(original)
    tok = moved / "tokenizer.json"
    tok.write_text(tok.read_text().replace('"[UNK]"', '"[UNK2]"', 1))
    with pytest.raises(ValueError, match="tokenizer.json changed after export"):
        load_open_clip(moved)
    assert main(["eval", "zeroshot", "--model", f"local-dir:{moved}", "--images", str(tmp_path)]) == 2
    assert "changed after export" in capsys.readouterr().err


def test_tampered_weights_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    lit = littune.load(_run(tmp_path, []))
    out = tmp_path / "oc"
    export_model(lit, out, format="open_clip")
    state = load_file(str(out / "open_clip_model.safetensors"))
    state["text.proj.weight"][0, 0] += 1e-3
    save_file(state, str(out / "open_clip_model.safetensors"))
    with pytest.raises(ValueError, match="weights of text_head do not match"):
        load_open_clip(out)


# ---- the real towers on real data ----------------------------------------------------------------
@pytest.fixture(scope="module")
def real_export(tmp_path_factory):
    """The demo's towers (packaged EfficientNet-Lite0 locked, MiniLM) with open_clip-compatible heads."""
    root = tmp_path_factory.mktemp("oc_real")
    cfg = load_config(None, [OVERLAY, "model.text.head_bias=false", "model.text.context_length=32",
                             "model.init_temperature=30", "data.train=flickr8k:/data/flickr8k:train"])
    torch.manual_seed(0)
    model = cfg.model.build()
    run = root / "run"
    save_model(model, run)
    (run / "config.yaml").write_text(to_yaml(cfg))
    lit = littune.load(run)
    export_model(lit, root / "oc", format="open_clip")
    return {"lit": lit, "run": run, "folder": root / "oc", "root": root}


def _flowers_slice(shared: Path, out: Path, per_class: int = 10) -> Path:
    """50 flowers test photos (10 per class), linked into a folder of class folders."""
    for cls in sorted(os.listdir(shared / "flowers" / "test")):
        (out / cls).mkdir(parents=True, exist_ok=True)
        for name in sorted(os.listdir(shared / "flowers" / "test" / cls))[:per_class]:
            (out / cls / name).symlink_to(shared / "flowers" / "test" / cls / name)
    return out


@pytest.mark.data
def test_real_towers_match_on_real_photos(real_export, shared_data, capsys):
    import csv

    lit, folder = real_export["lit"], real_export["folder"]
    photos = _flowers_slice(shared_data, real_export["root"] / "flowers50")
    paths = sorted(photos.rglob("*.jpg"))
    assert len(paths) == 50
    with open(shared_data / "flickr8k" / "captions.csv", newline="", encoding="utf-8") as f:
        captions = [row["caption"] for _, row in zip(range(100), csv.DictReader(f))]
    model, img, txt = _open_clip_embeddings(folder, [Image.open(p).convert("RGB") for p in paths], captions)
    cos_img = (img * lit.embed_images(paths)).sum(-1)
    cos_txt = (txt * lit.embed_texts(captions)).sum(-1)
    assert cos_img.min() >= 0.9999 and cos_txt.min() >= 0.9999, (cos_img.min(), cos_txt.min())
    assert float(model.logit_scale.detach()) == float(lit.model.logit_scale.detach())
    # Zero-shot predictions on the 50 photos: open_clip's own API against littune's classify.
    names = ["daisy", "dandelion", "rose", "sunflower", "tulip"]
    prompts = get_templates("flowers")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    with torch.no_grad():
        weights = build_classifier(lambda t: model.encode_text(tokenizer(t), normalize=True), names, prompts)
    oc_pred = (img @ weights.T).argmax(-1)
    lit_pred = lit.probabilities(paths, names, prompts).argmax(-1)
    assert torch.equal(oc_pred, lit_pred)
    # littune eval reads both with the same code and reports the same numbers.
    results = []
    for spec in (str(real_export["run"]), f"local-dir:{folder}"):
        assert main(["eval", "zeroshot", "--model", spec, "--images", str(photos), "--templates", "flowers", "--json",
                     "--no-progress", "--cache", str(real_export["root"] / "cache")]) == 0
        results.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert results[0]["top1"] == results[1]["top1"] and results[0]["per_class"] == results[1]["per_class"]
    print(f"\nopen_clip vs littune: image cosine min {cos_img.min():.7f}, text cosine min {cos_txt.min():.7f}, "
          f"zero-shot agreement {float((oc_pred == lit_pred).float().mean()):.3f} on {len(paths)} photos")
