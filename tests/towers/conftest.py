"""Tiny random-init Hugging Face models and tokenizers, saved to a temporary folder and loaded by path."""
from __future__ import annotations

from pathlib import Path

import pytest

from .tiny import HF_IMAGE_BUILDERS, tiny_hf_tokenizer


@pytest.fixture(scope="session")
def hf_image_dirs(tmp_path_factory) -> dict[str, Path]:
    """name -> folder with a tiny random-init model and its image processor."""
    import torch

    root = tmp_path_factory.mktemp("hf_image")
    out = {}
    for name, build in HF_IMAGE_BUILDERS.items():
        torch.manual_seed(0)
        model, proc = build()
        model.save_pretrained(root / name)
        proc.save_pretrained(root / name)
        out[name] = root / name
    return out


@pytest.fixture(scope="session")
def hf_text_dirs(tmp_path_factory) -> dict[str, Path]:
    """'bert' and 't5': tiny random-init encoders, each saved with a small WordPiece tokenizer."""
    import torch
    import transformers as tr

    root = tmp_path_factory.mktemp("hf_text")
    tok = tiny_hf_tokenizer()
    torch.manual_seed(0)
    models = {
        "bert": tr.BertModel(tr.BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                                           num_attention_heads=2, intermediate_size=64,
                                           max_position_embeddings=64, pad_token_id=0)),
        "t5": tr.T5EncoderModel(tr.T5Config(vocab_size=len(tok), d_model=24, d_kv=8, d_ff=48, num_layers=2,
                                            num_heads=2, pad_token_id=0)),
    }
    for name, model in models.items():
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
    return {name: root / name for name in models}
