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

from .towers import ImageTower, TextTower
from .towers.config import ImageTowerConfig, TextTowerConfig


@dataclass
class ModelConfig:
    image: ImageTowerConfig = field(default_factory=ImageTowerConfig)
    text: TextTowerConfig = field(default_factory=TextTowerConfig)
    embed_dim: Optional[int] = None  # shared space size; None = the image tower's size
    init_temperature: float = 10.0
    init_bias: float = -10.0  # SigLIP's start for the sigmoid loss' bias
    learn_temperature: bool = True

    def build(self, image_tower: ImageTower | None = None, tokenizer: Any = None) -> "LiTModel":
        image = image_tower or self.image.build()
        text = self.text.build(tokenizer=tokenizer)
        return LiTModel(image, text, image_head=self.image.head, embed_dim=self.embed_dim,
                        init_temperature=self.init_temperature, init_bias=self.init_bias,
                        learn_temperature=self.learn_temperature)


class LiTModel(nn.Module):
    def __init__(self, image: ImageTower, text: TextTower, *, image_head: str = "none",
                 embed_dim: int | None = None, init_temperature: float = 10.0, init_bias: float = -10.0,
                 learn_temperature: bool = True):
        super().__init__()
        self.image, self.text = image, text
        dim = embed_dim or image.embed_dim
        if image_head == "none":
            if dim != image.embed_dim:
                raise ValueError(f"embed_dim={dim} needs image head 'linear' (image tower gives {image.embed_dim})")
            self.image_head: nn.Module = nn.Identity()
        elif image_head == "linear":
            self.image_head = nn.Linear(image.embed_dim, dim)
        else:
            raise ValueError(f"image head '{image_head}' not in none, linear")
        self.text_head = nn.Linear(text.embed_dim, dim)
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
        return {"image": self.image.fingerprint(), "text": self.text.fingerprint()}

    def describe(self) -> dict[str, Any]:
        return {"image": self.image.describe(), "text": self.text.describe(), "embed_dim": self.embed_dim,
                "temperature": self.temperature, "fingerprints": self.fingerprints()}
