"""A text transformer trained from random init, with its own tokenizer.

The tokenizer is either trained on the training captions (WordPiece, with the ``tokenizers``
library) or taken from a packaged vocabulary (``minilm``: the 30,522-token WordPiece vocabulary of
the MiniLM package). The encoder is a pre-norm transformer built from torch's own layers; its
pooling is first token, last token, mean, max, or attention (a learned query, as in LiT/SigLIP's
MAP head); ``dropout`` is the encoder layers' dropout (attention weights and residual branches).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from .canonical import needs_lowercase
from .text import TextTower, Tokenizer, pool
from .text_hf import minilm_path


def wrap_tokenizer(tok: "tokenizers.Tokenizer", context_length: int) -> Tokenizer:  # noqa: F821
    tok = type(tok).from_str(tok.to_str())  # a private copy: truncation/padding below must not leak
    tok.enable_truncation(max_length=context_length)
    pad_id = tok.token_to_id("[PAD]") or 0
    tok.enable_padding(pad_id=pad_id, pad_token="[PAD]")

    def encode(texts: list[str]) -> dict[str, torch.Tensor]:
        enc = tok.encode_batch(texts)
        return {"input_ids": torch.tensor([e.ids for e in enc], dtype=torch.long),
                "attention_mask": torch.tensor([e.attention_mask for e in enc], dtype=torch.long)}

    def save(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        tok.save(str(folder / "tokenizer.json"))

    return Tokenizer(encode, context_length, tok.get_vocab_size(), save, tok.to_str(), needs_lowercase(tok.get_vocab(), tok))


def train_tokenizer(texts: Iterable[str], vocab_size: int = 8192) -> "tokenizers.Tokenizer":  # noqa: F821
    """A lower-cased WordPiece tokenizer trained on ``texts``, with [CLS] ... [SEP] framing."""
    from tokenizers import Tokenizer as HFTok, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = HFTok(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    # Deterministic training: the trainer breaks frequency ties by token id, and gives the
    # word-continuing pieces ("##a") their ids in hash order, so two trainings on the same captions
    # could pick different merges. We count the words ourselves (one pass, memory per distinct
    # word), name every continuing piece up front in sorted order (fixing every id, so every tie),
    # and hand the trainer the counts: the same captions in any order give the same vocabulary.
    counts: Counter[str] = Counter()
    for t in texts:
        counts.update(w for w, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(t)))
    fixed = [f"##{c}" for c in sorted({c for w in counts for c in w[1:]})]

    def words() -> Iterator[str]:  # each distinct word as often as it occurs, a few thousand per string
        for w in sorted(counts):
            for i in range(0, counts[w], 4096):
                yield " ".join([w] * min(4096, counts[w] - i))

    tok.train_from_iterator(words(), trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=special + fixed,
                                                                    show_progress=False))
    tok = _unmark_special(tok, set(fixed))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tok.token_to_id("[CLS]")),
                                                 ("[SEP]", tok.token_to_id("[SEP]"))])
    return tok


def _unmark_special(tok: "tokenizers.Tokenizer", pieces: set[str]) -> "tokenizers.Tokenizer":  # noqa: F821
    """The fixed continuing pieces as ordinary vocabulary again (the trainer made them special tokens)."""
    import json

    state = json.loads(tok.to_str())
    state["added_tokens"] = [t for t in state["added_tokens"] if t["content"] not in pieces]
    return type(tok).from_str(json.dumps(state))


def load_tokenizer(spec: str, context_length: int) -> Tokenizer:
    """``minilm`` (packaged vocabulary) or a path to a ``tokenizer.json`` (or a folder holding one)."""
    from tokenizers import Tokenizer as HFTok

    path = minilm_path() / "tokenizer.json" if spec == "minilm" else Path(spec)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer '{spec}': no tokenizer.json at {path}")
    return wrap_tokenizer(HFTok.from_file(str(path)), context_length)


class AttentionPool(nn.Module):
    """One learned query attends over the tokens (multi-head attention pooling)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, width) * width**-0.5)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q = self.query.expand(hidden.shape[0], -1, -1)  # (B, 1, D)
        out, _ = self.attn(q, hidden, hidden, key_padding_mask=mask == 0, need_weights=False)
        return out[:, 0]


class ScratchTextTower(TextTower):
    def __init__(self, tokenizer: Tokenizer, width: int = 256, depth: int = 4, heads: int = 4,
                 mlp_ratio: float = 4.0, pooling: str = "mean", dropout: float = 0.0):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.name, self.tokenizer, self.embed_dim, self.pooling = "scratch", tokenizer, width, pooling
        self.token_emb = nn.Embedding(tokenizer.vocab_size, width)
        self.pos_emb = nn.Parameter(torch.randn(tokenizer.context_length, width) * 0.01)
        layer = nn.TransformerEncoderLayer(width, heads, int(width * mlp_ratio), dropout=dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.attn_pool = AttentionPool(width, heads) if pooling == "attention" else None
        nn.init.normal_(self.token_emb.weight, std=0.02)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        T = input_ids.shape[1]
        x = self.token_emb(input_ids) + self.pos_emb[:T]  # (B, T, D)
        x = self.blocks(x, src_key_padding_mask=attention_mask == 0)
        x = self.norm(x)
        if self.attn_pool is not None:
            return self.attn_pool(x, attention_mask)
        return pool(x, attention_mask, self.pooling)

    def layer_groups(self) -> list[nn.Module]:
        return [nn.ModuleList([self.token_emb]), *self.blocks.layers]


def create_scratch(*, pretrained: bool = False, tokenizer: str | Tokenizer = "minilm", context_length: int = 32,
             width: int = 256, depth: int = 4, heads: int = 4, mlp_ratio: float = 4.0,
             pooling: str = "mean", dropout: float = 0.0, **_: Any) -> ScratchTextTower:
    tok = tokenizer if isinstance(tokenizer, Tokenizer) else load_tokenizer(tokenizer, context_length)
    return ScratchTextTower(tok, width=width, depth=depth, heads=heads, mlp_ratio=mlp_ratio, pooling=pooling,
                            dropout=dropout)
