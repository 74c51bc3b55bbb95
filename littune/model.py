"""The LiT two-tower model (Zhai et al. 2022; the API follows open_clip's CLIP).

    image features  ──► [image head] ──► L2-normalise ──► z_img (B, E)
    text  features  ──►  text head   ──► L2-normalise ──► z_txt (B, E)
    logits = exp(t) · z_img z_txtᵀ (+ b for the sigmoid loss)

The image head is off by default (the paper's best setting keeps the locked features as they
are); the text head maps the text width to the image embedding size. ``t`` (log temperature)
starts at log(10) and is learned in log space; ``b`` is SigLIP's learnable bias.
``encode_image_features`` takes cached tower outputs, so training on the cache skips the tower.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .heads import make_head
from .towers import ImageTower, TextTower
from .towers.lock import fingerprint
from .towers.config import ImageTowerConfig, TextTowerConfig


@dataclass
class ModelConfig:
    image: ImageTowerConfig = field(default_factory=ImageTowerConfig)
    text: TextTowerConfig = field(default_factory=TextTowerConfig)
    embed_dim: Optional[int] = None  # shared space size; None = the image tower's size
    init_temperature: float = 10.0
    init_bias: float = -10.0  # SigLIP's start for the sigmoid loss' bias
    learn_temperature: bool = True

    def build(self, image_tower: ImageTower | None = None, tokenizer: Any = None,
              text_tower: TextTower | None = None) -> "LiTModel":
        """``image_tower`` / ``text_tower``: already built by the caller (the demo's evaluation reuses the
        ones it trained with), else built from the config."""
        image = image_tower or self.image.build()
        text = text_tower or self.text.build(tokenizer=tokenizer)
        dim = self.embed_dim or image.embed_dim
        heads = {}
        for side, c, d_in in (("image", self.image, image.embed_dim), ("text", self.text, text.embed_dim)):
            heads[side] = make_head(c.head, d_in, dim, hidden=c.head_hidden, depth=c.head_depth, bias=c.head_bias,
                                    dropout=c.head_dropout, where=f"model.{side}.head")
        return LiTModel(image, text, image_head=heads["image"], text_head=heads["text"], embed_dim=dim,
                        init_temperature=self.init_temperature, init_bias=self.init_bias,
                        learn_temperature=self.learn_temperature)


class LiTModel(nn.Module):
    def __init__(self, image: ImageTower, text: TextTower, *, image_head: str | nn.Module = "none",
                 text_head: str | nn.Module = "linear", embed_dim: int | None = None,
                 init_temperature: float = 10.0, init_bias: float = -10.0, learn_temperature: bool = True):
        super().__init__()
        self.image, self.text = image, text
        dim = embed_dim or image.embed_dim
        self.image_head = (image_head if isinstance(image_head, nn.Module)
                           else make_head(image_head, image.embed_dim, dim, where="image head"))
        self.text_head = (text_head if isinstance(text_head, nn.Module)
                          else make_head(text_head, text.embed_dim, dim, where="text head"))
        self.embed_dim = dim
        self.logit_scale = nn.Parameter(torch.tensor(math.log(init_temperature)),
                                        requires_grad=learn_temperature)
        self.logit_bias = nn.Parameter(torch.tensor(float(init_bias)))

    # ---- image side -------------------------------------------------------------------------
    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """The tower's raw pooled features (B, D_img): what the embedding cache stores."""
        return self.image(pixels)

    def encode_image_features(self, features: torch.Tensor) -> torch.Tensor:
        """Cached or live tower features (B, D_img) -> normalised embeddings (B, E)."""
        return F.normalize(self.image_head(features.float()), dim=-1)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.encode_image_features(self.image_features(pixels))

    # ---- text side --------------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.text.tokenizer(texts)

    def text_features(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """The text tower's pooled features (B, D_txt): what the text cache stores for a locked tower."""
        return self.text(tokens)

    def encode_text_features(self, features: torch.Tensor) -> torch.Tensor:
        """Cached or live text features (B, D_txt) -> normalised embeddings (B, E)."""
        return F.normalize(self.text_head(features.float()), dim=-1)

    def encode_text(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.normalize(self.text_head(self.text(tokens)), dim=-1)  # (B, E)

    # ---- both ---------------------------------------------------------------------------------
    def forward(self, tokens: dict[str, torch.Tensor], pixels: torch.Tensor | None = None,
                image_features: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if (pixels is None) == (image_features is None):
            raise ValueError("pass exactly one of pixels or image_features")
        img = self.encode_image(pixels) if pixels is not None else self.encode_image_features(image_features)
        return {"image_emb": img, "text_emb": self.encode_text(tokens),
                "logit_scale": self.logit_scale.exp(), "logit_bias": self.logit_bias}

    @property
    def temperature(self) -> float:
        return float(self.logit_scale.detach().exp())

    def fingerprints(self) -> dict[str, str]:
        """A fingerprint per weight group and one of the whole model: a changed head, temperature or
        bias is as visible as a changed tower."""
        return {"image": self.image.fingerprint(), "text": self.text.fingerprint(),
                "image_head": fingerprint(self.image_head), "text_head": fingerprint(self.text_head),
                "logit_scale": fingerprint_tensor(self.logit_scale), "logit_bias": fingerprint_tensor(self.logit_bias),
                "model": fingerprint(self)}

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per group and how many of them train (what model_info.json and the progress line show)."""
        out = {}
        for name, module in (("image", self.image), ("text", self.text), ("image_head", self.image_head),
                             ("text_head", self.text_head)):
            ps = list(module.parameters())
            out[name] = sum(p.numel() for p in ps)
            out[f"{name}_trainable"] = sum(p.numel() for p in ps if p.requires_grad)
        scalars = [p for p in (self.logit_scale, self.logit_bias) if p.requires_grad]
        out["trainable"] = sum(v for k, v in out.items() if k.endswith("_trainable")) + len(scalars)
        out["total"] = sum(p.numel() for p in self.parameters())
        return out

    def describe(self) -> dict[str, Any]:
        return {"image": self.image.describe(), "text": self.text.describe(), "embed_dim": self.embed_dim,
                "temperature": self.temperature, "fingerprints": self.fingerprints()}


def fingerprint_tensor(t: torch.Tensor) -> str:
    """One tensor's fingerprint (dtype, shape, bytes), as ``fingerprint`` does for a module."""
    holder = nn.Module()
    holder.register_buffer("t", t.detach())
    return fingerprint(holder)
