"""littune export: the folder alone gives the run's embeddings; with HF towers, so does transformers."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import littune
from littune.infer.export import export_model
from littune.train import load_config, to_yaml
from littune.runs import save_model

from tests.towers.tiny import HF_IMAGE_BUILDERS, tiny_hf_tokenizer

TEXTS = ["red above blue", "a dog runs on the grass", "two people ride bikes down a hill and a very long tail"]


def test_export_round_trip_without_the_run(tiny_lit_run, tmp_path):
    # A private copy of the run (and of the tower weights it was built from), so both can vanish.
    run = tmp_path / "run"
    shutil.copytree(tiny_lit_run["run"], run)
    lit = littune.load(run)
    images = tiny_lit_run["images"][:6]
    img, txt = lit.embed_images(images), lit.embed_texts(TEXTS)
    meta = export_model(lit, tmp_path / "export")
    assert meta["hf_dual_encoder"] is None and "Hugging Face" in meta["hf_dual_encoder_skipped"]
    out = tmp_path / "export"
    assert {"export.json", "config.yaml", "model.safetensors", "model_info.json", "tokenizer"} <= {p.name for p in out.iterdir()}

    shutil.rmtree(run)  # the training run is gone ...
    cfg = load_config(out / "config.yaml")
    weights = Path(cfg.model.image.checkpoint)
    hidden = weights.with_suffix(".away")
    weights.rename(hidden)  # ... and so is the file its locked tower was built from
    try:
        exported = littune.load(out)
        assert torch.equal(exported.embed_images(images), img)
        assert torch.equal(exported.embed_texts(TEXTS), txt)
        assert exported.model.fingerprints() == lit.model.fingerprints()
        assert exported.model.image.name == lit.model.image.name
        assert exported.temperature == pytest.approx(lit.temperature)
    finally:
        hidden.rename(weights)
    with pytest.raises(FileExistsError, match="not empty"):
        export_model(lit, out)


def test_damaged_export_is_refused(tiny_lit_run, tmp_path):
    out = tmp_path / "export"
    export_model(littune.load(tiny_lit_run["run"]), out, hf=False)
    meta = json.loads((out / "export.json").read_text())
    meta["fingerprints"]["image"] = "0" * 16
    (out / "export.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="fingerprint"):
        littune.load(out)


def test_every_export_has_a_model_card(tiny_lit_run, tmp_path):
    import yaml

    from littune.evaluate.summary import build_report

    run = tmp_path / "run"
    shutil.copytree(tiny_lit_run["run"], run)
    shutil.rmtree(run / "report", ignore_errors=True)
    build_report(run / "report", "tiny", {"colours zero-shot": {"top1": 0.8125, "top5": 1.0, "n": 16,
                                                              "per_class": {"red": 1.0}},
                                          "colours retrieval": {"i2t_r1": 0.375, "t2i_r1": 0.4583}})
    lit = littune.load(run)
    out = tmp_path / "export"
    export_model(lit, out, hf=False, license="apache-2.0")
    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "littune" and front["license"] == "apache-2.0"
    assert {"lit", "zero-shot-image-classification"} <= set(front["tags"]) and front["datasets"] == ["data"]
    assert "| colours zero-shot | top1 | 0.8125 |" in card and "| colours retrieval | t2i_r1 | 0.4583 |" in card
    assert f"steps: {json.loads((run / 'summary.json').read_text())['step']}, batch size 12" in card
    for group, fp in lit.model.fingerprints().items():
        assert f"| {group} | `{fp}` |" in card
    assert "littune.load(" in card and "open_clip: not exportable as it is" in card  # a scratch text tower
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["evals"]["colours zero-shot"]["top1"] == 0.8125 and metrics["training"]["steps"] == 40
    # An export of the export keeps the card's facts (the run may be gone by then).
    shutil.rmtree(run)
    again = littune.load(out)
    export_model(again, tmp_path / "again", hf=False)
    assert "| colours zero-shot | top1 | 0.8125 |" in (tmp_path / "again" / "README.md").read_text()


def test_edited_export_is_refused_and_force_replaces(tiny_lit_run, tmp_path):
    out = tmp_path / "export"
    lit = littune.load(tiny_lit_run["run"])
    export_model(lit, out, hf=False)
    config = out / "config.yaml"
    config.write_text(config.read_text().replace("pooling: mean", "pooling: max"))
    assert "pooling: max" in config.read_text()
    with pytest.raises(ValueError, match="config.yaml changed after export"):
        littune.load(out)
    with pytest.raises(FileExistsError, match="not empty"):
        export_model(lit, out, hf=False)
    export_model(lit, out, hf=False, force=True)  # replaced by a fresh, loadable export
    assert torch.equal(littune.load(out).embed_texts(TEXTS), lit.embed_texts(TEXTS))
    assert not (tmp_path / "export.tmp").exists() and not (tmp_path / "export.old").exists()


# ---- Hugging Face towers: a transformers VisionTextDualEncoderModel with the same embeddings ---------
def _hf_run(root: Path, image_kind: str, pooling: str, *overrides: str) -> Path:
    """A run directory whose towers are tiny random-init HF models saved under ``root``."""
    import transformers as tr

    torch.manual_seed(0)
    vision, proc = HF_IMAGE_BUILDERS[image_kind]()
    vision.save_pretrained(root / "vision")
    proc.save_pretrained(root / "vision")
    tok = tiny_hf_tokenizer()
    bert = tr.BertModel(tr.BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=64, max_position_embeddings=64, pad_token_id=0))
    with torch.no_grad():  # a trained-looking final LayerNorm (random init has gamma=1, beta=0)
        norm = bert.encoder.layer[-1].output.LayerNorm
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_(0, 0.3)
    bert.save_pretrained(root / "text")
    tok.save_pretrained(root / "text")
    cfg = load_config(None, [f"model.image.name=hf:{root / 'vision'}", "model.image.lock=L",
                             f"model.text.name=hf:{root / 'text'}", "model.text.lock=U",
                             f"model.text.pooling={pooling}", "model.text.context_length=16",
                             "model.init_temperature=17", "data.train=unused.csv", *overrides])
    model = cfg.model.build()
    with torch.no_grad():
        model.text_head.bias.normal_(0, 0.5)  # a text head bias that matters
    run = root / "run"
    save_model(model, run)
    (run / "config.yaml").write_text(to_yaml(cfg))
    return run


def _raw_images() -> list[Image.Image]:
    """Photos of several shapes (smooth, like photos) and one of noise; their resized sides exceed the
    crop by even margins, where transformers' floored centre-crop offset equals torchvision's rounded one."""
    rng = np.random.default_rng(0)
    smooth = [Image.fromarray(rng.integers(0, 255, (4, 5, 3), dtype=np.uint8)).resize(size, Image.BILINEAR)
              for size in [(40, 48), (64, 32), (50, 70)]]
    return smooth + [Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8))]


@pytest.mark.parametrize("image_kind", ["vit", "dinov2", "clip", "siglip"])
def test_hf_dual_encoder_gives_the_same_embeddings(tmp_path, image_kind):
    """As a transformers user calls it: the folder's own image processor and tokenizer on raw inputs."""
    from transformers import AutoImageProcessor, AutoTokenizer, VisionTextDualEncoderModel

    lit = littune.load(_hf_run(tmp_path, image_kind, pooling="first"))
    meta = export_model(lit, tmp_path / "export")
    assert meta["hf_dual_encoder"] == "hf_dual_encoder", meta["hf_dual_encoder_skipped"]
    folder = tmp_path / "export" / "hf_dual_encoder"
    dual = VisionTextDualEncoderModel.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    images = _raw_images()
    want_img, want_txt = lit.embed_images(images), lit.embed_texts(TEXTS)
    own = lit.model.image.preprocess.backend  # hf: towers resize as transformers' default backend does
    for backend in ("pil", None):
        # The backend littune reproduces gives its pixels; the other resizes with other kernels (PIL's, or
        # torchvision's antialiased ones on uint8 tensors): pixels a 255th apart.
        same = (backend == "pil") == (own == "pil")
        pixel_tol, emb_tol = (1e-6, 1e-5) if same else (1.01 / 255, 1e-3)
        proc = AutoImageProcessor.from_pretrained(folder, **({"backend": backend} if backend else {}))
        pixels = proc(images=images, return_tensors="pt")["pixel_values"]
        std = torch.tensor(lit.model.image.preprocess.std)[:, None, None]
        assert pixels.shape == lit.pixels(images).shape
        assert ((pixels - lit.pixels(images)).abs() * std).max() <= pixel_tol, backend  # in [0, 1] units
        with torch.no_grad():
            img_hf = torch.nn.functional.normalize(dual.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
        assert (img_hf - want_img).abs().max() <= emb_tol, (backend, (img_hf - want_img).abs().max())
    # Where the resized side exceeds the crop by 4k+3 pixels, transformers floors the crop offset (and
    # so does littune's transformers backend) where torchvision rounds it: the same pixels.
    r = lit.model.image.preprocess.resize_size
    odd = [Image.fromarray(np.random.default_rng(1).integers(0, 255, (r, r + 7, 3), dtype=np.uint8))]
    pixels = AutoImageProcessor.from_pretrained(folder)(images=odd, return_tensors="pt")["pixel_values"]
    assert torch.allclose(pixels, lit.pixels(odd), atol=1e-5)
    with torch.no_grad():
        enc = tok(TEXTS, padding=True, truncation=True, return_tensors="pt")
        txt_hf = torch.nn.functional.normalize(dual.get_text_features(**enc).pooler_output, dim=-1)
    assert torch.allclose(txt_hf, want_txt, atol=1e-5), (txt_hf - want_txt).abs().max()
    assert float(dual.logit_scale.detach().exp()) == pytest.approx(lit.temperature, rel=1e-5)
    # The littune export of the same model loads from the folder alone, with its HF configs inside.
    again = littune.load(tmp_path / "export")
    assert torch.equal(again.embed_texts(TEXTS), want_txt)
    assert torch.equal(again.embed_images(images), want_img)


def test_mean_pooled_text_is_not_written_as_a_dual_encoder(tmp_path):
    lit = littune.load(_hf_run(tmp_path, "vit", pooling="mean"))
    meta = export_model(lit, tmp_path / "export")
    assert meta["hf_dual_encoder"] is None and "pooling 'mean'" in meta["hf_dual_encoder_skipped"]
    assert not (tmp_path / "export" / "hf_dual_encoder").exists()
    assert torch.equal(littune.load(tmp_path / "export").embed_texts(TEXTS), lit.embed_texts(TEXTS))


def test_cls_mean_image_pooling_exports_without_a_dual_encoder(tmp_path):
    lit = littune.load(_hf_run(tmp_path, "dinov2", "first", "model.image.pooling=cls_mean"))
    assert lit.model.image.pooling == "cls_mean" and lit.model.image.embed_dim == 80
    meta = export_model(lit, tmp_path / "export")
    assert meta["hf_dual_encoder"] is None and "image pooling 'cls_mean'" in meta["hf_dual_encoder_skipped"]
    again = littune.load(tmp_path / "export")
    assert again.model.image.name == lit.model.image.name and again.model.image.name.endswith("+cls_mean")
    images = [Image.new("RGB", (40, 48), c) for c in ((200, 30, 30), (20, 180, 60))]
    assert torch.equal(again.embed_images(images), lit.embed_images(images))
