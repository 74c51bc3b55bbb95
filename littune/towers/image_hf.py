"""Image towers from Hugging Face transformers: ViT, DINOv2, CLIP/SigLIP vision, ResNet, ConvNeXt.

``hf:<hub-name-or-local-folder>``. A full CLIP or SigLIP checkpoint contributes its vision model.
The embedding is the model's pooled output where it is a pre-logits feature (DINOv2, CLIP, SigLIP,
ResNet, ConvNeXt) and the final-norm CLS token for ViT (whose pooler adds an untrained tanh layer).
BEiT with ``use_mean_pooling`` (its default) is read from ``pooler_output``, the layer-normed mean of
the patch tokens that its classifier sees; its class token there is not normalised and never used.
``pooling='cls_mean'`` (ViT, DeiT, DINOv2 with or without registers, CLIP vision) concatenates that
class token with the mean of the final-norm patch tokens (dino.txt, arXiv 2412.16334).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .checkpoint import load_into, read_state_dict
from .image import ImageTower, check_pooling, cls_mean, pooled_name
from .preprocess import Preprocess

_CLS_TOKEN_MODELS = {"vit", "deit", "beit"}
# cls_mean: model type -> tokens before the patches in last_hidden_state (class first, then the
# distillation token of DeiT or the registers of DINOv2-with-registers).
_PREFIX_TOKENS = {"vit": lambda c: 1, "deit": lambda c: 2, "dinov2": lambda c: 1, "clip_vision_model": lambda c: 1,
                  "dinov2_with_registers": lambda c: 1 + c.num_register_tokens}


def _vision_part(model: nn.Module) -> nn.Module:
    return getattr(model, "vision_model", model)


class HFImageTower(ImageTower):
    def __init__(self, model: nn.Module, name: str, preprocess: Preprocess, pooling: str = "default"):
        super().__init__()
        cfg = model.config
        self.model_type = cfg.model_type
        self.pooling = check_pooling(pooling, name, self.model_type in _PREFIX_TOKENS)
        self.model = model
        self.name = pooled_name(name, pooling)
        self.preprocess = preprocess
        self.embed_dim = int(getattr(cfg, "hidden_size", None) or cfg.hidden_sizes[-1])
        # BEiT's mean pooling: its final LayerNorm is in the pooler, so last_hidden_state is un-normed.
        self._class_token = self.model_type in _CLS_TOKEN_MODELS and not (
            self.model_type == "beit" and getattr(cfg, "use_mean_pooling", False))
        if pooling == "cls_mean":
            self._prefix = _PREFIX_TOKENS[self.model_type](cfg)
            self.embed_dim *= 2

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=pixels)
        if self.pooling == "cls_mean":
            tokens = out.last_hidden_state  # (B, T, D); CLIP applies its final norm outside it
            norm = getattr(self.model, "post_layernorm", None) if self.model_type == "clip_vision_model" else None
            return cls_mean(tokens if norm is None else norm(tokens), self._prefix)  # (B, 2D)
        if self._class_token or getattr(out, "pooler_output", None) is None:
            hidden = out.last_hidden_state  # (B, T, D) or (B, C, H, W)
            return hidden[:, 0] if hidden.dim() == 3 else hidden.mean(dim=(2, 3))
        return out.pooler_output.flatten(1)  # (B, D) or (B, C, 1, 1) -> (B, C)

    def layer_groups(self) -> list[nn.Module]:
        # The stem is every child registered before the layer list (embeddings, CLIP's
        # pre_layrnorm); transformers 5 keeps ViT's layers on the model itself (no .encoder).
        container = getattr(self.model, "encoder", None)
        container = self.model if container is None else container
        layers = next((m for m in container.children() if isinstance(m, nn.ModuleList)), None)
        if layers is None:
            raise ValueError(f"{self.name}: no layer list found for partial locking")
        stem = []
        for child in self.model.children():
            if child is container or child is layers:
                break
            stem.append(child)
        return ([nn.ModuleList(stem)] if stem else []) + list(layers)


def create_hf_image_tower(spec: str, *, pretrained: bool = True, checkpoint: str | None = None,
                          allow_partial: bool = False, pooling: str = "default", **kwargs: Any) -> HFImageTower:
    from transformers import AutoConfig, AutoImageProcessor, AutoModel

    config = AutoConfig.from_pretrained(spec)
    if pretrained and checkpoint is None:
        model = AutoModel.from_pretrained(spec, **kwargs)
    else:
        model = AutoModel.from_config(config)
    model = _vision_part(model)
    if checkpoint:
        load_into(model, read_state_dict(checkpoint), source=checkpoint, allow_partial=allow_partial)
    try:
        processor = AutoImageProcessor.from_pretrained(spec)
    except (OSError, ValueError) as e:
        raise ValueError(f"hf:{spec} has no image processor config (preprocessor_config.json): {e}") from e
    return HFImageTower(model.eval(), f"hf:{spec}", Preprocess.from_hf(processor), pooling)
