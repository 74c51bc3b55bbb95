"""A tiny pre-trained-style text tower for text-cache tests: a 2-layer BERT saved in a folder,
with a WordPiece tokenizer trained on the colour captions of tiny_data (no downloads)."""
from __future__ import annotations

import itertools
from pathlib import Path

from .tiny_data import COLOURS


def save_tiny_bert(folder: Path, seed: int = 0, hidden: int = 32, layers: int = 2, kind: str = "bert") -> Path:
    """``kind``: bert, or mpnet (relative position bias shared by every layer)."""
    import torch
    import transformers as tr
    from transformers import PreTrainedTokenizerFast

    from littune.towers import train_tokenizer

    captions = [f"{a} above {b}" for a, b in itertools.permutations(COLOURS, 2)]
    tok = PreTrainedTokenizerFast(tokenizer_object=train_tokenizer(captions * 2, vocab_size=120), unk_token="[UNK]",
                                  pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", model_max_length=64)
    torch.manual_seed(seed)
    build, config = (tr.BertModel, tr.BertConfig) if kind == "bert" else (tr.MPNetModel, tr.MPNetConfig)
    model = build(config(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                         intermediate_size=2 * hidden, max_position_embeddings=64, pad_token_id=0))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
