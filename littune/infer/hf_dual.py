"""Write a LiT model with Hugging Face towers as a transformers ``VisionTextDualEncoderModel``.

transformers' dual encoder embeds an image as ``visual_projection(vision_model(...).pooler_output)``
and a text as ``text_projection(text_model(...).pooler_output)``, both projections without bias.
littune's embeddings are the tower's pooled feature through an optional image head and a text
head with a bias. The two agree exactly where the vision model's pooler output is littune's image
feature (DINOv2, CLIP and SigLIP vision; ViT after setting its pooler to the identity) and the image
head is the identity or bias-free.

The text side needs a construction, because BERT's pooler is ``tanh(W_p h_0 + b_p)`` on the first
token's final hidden state h_0 (H values), while littune computes ``y = W h_0 + b`` (CLS pooling):
  * h_0 is a LayerNorm output, so ``u . h_0 = u . beta`` (=: kappa) with ``u = 1/gamma``: h_0 has
    one constant direction. With B (H-1, H) an orthonormal basis of u's complement,
    ``h_0 = B^T z + u kappa / |u|^2`` where ``z = B h_0``.
  * The pooler computes ``p = tanh([eps B h_0 ; 30])`` = ``[eps z (1 + O(eps^2 z^2)) ; 1]``: eps is
    chosen so that ``|eps z| <= 1e-4``, where tanh is the identity to far below float32 rounding,
    and the freed last unit saturates to exactly 1.
  * ``text_projection = [W B^T / eps , W u kappa / |u|^2 + b]`` then gives ``P p = W h_0 + b``.
Mean pooling reads every token, which the pooler never sees: such models are not written (the
reason is recorded in export.json).

The image processor is written from littune's own preprocessing (``towers/preprocess.py``), not copied
from the vision model's source: a CLIPImageProcessor that resizes to ``floor(input_size / crop_pct)``
(the shorter side, or both sides for ``resize_mode: squash``) with the same filter, centre-crops
``input_size`` and normalises with the tower's mean and std. ``hf:`` towers preprocess as transformers'
default torchvision backend does (the same pixels); ``backend="pil"`` resizes with PIL (a 255th apart).
For timm towers it is the other way round, and transformers floors the centre-crop offset where
torchvision rounds it: when the resized side exceeds the crop by 4k+3 pixels, the crop sits one pixel over.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

_SAME_POOLER = {"dinov2", "clip_vision_model", "siglip_vision_model"}  # pooler_output == littune's feature
_IDENTITY_POOLER = {"vit"}  # CLS after the final norm, once the pooler is set to the identity


class UnsupportedDualEncoder(ValueError):
    pass


def _check(lit) -> None:
    m, cfg = lit.model, lit.cfg
    if cfg.model.image.concat or len(cfg.model.image.averaged_views) > 1:
        raise UnsupportedDualEncoder(f"not written: the image tower {m.image.name} is a concatenation or averaged "
                                     "views (model.image.concat / averaged_views); a dual encoder has one vision model")
    if not cfg.model.image.name.startswith("hf:") or cfg.model.text.name == "scratch":
        raise UnsupportedDualEncoder("not written: both towers must come from Hugging Face "
                                     f"(image {cfg.model.image.name}, text {cfg.model.text.name})")
    kind = m.image.model.config.model_type
    if m.image.pooling != "default":
        raise UnsupportedDualEncoder(f"not written: image pooling {m.image.pooling!r}; the dual encoder uses the "
                                     "model's pooler output (model.image.pooling=default)")
    if kind not in _SAME_POOLER | _IDENTITY_POOLER:
        raise UnsupportedDualEncoder(f"not written: image model type {kind!r} has a pooler output that differs from "
                                     f"littune's feature (supported: {sorted(_SAME_POOLER | _IDENTITY_POOLER)})")
    head = m.image_head
    if isinstance(head, nn.Linear) and head.bias is not None and bool(head.bias.abs().max() > 0):
        raise UnsupportedDualEncoder("not written: the image head has a bias; the dual encoder's projection has none")
    if m.text.pooling not in ("first", "cls"):
        raise UnsupportedDualEncoder(f"not written: text pooling {m.text.pooling!r}; the dual encoder uses the first "
                                     "token (train with model.text.pooling=first to export one)")
    if _text_pooler_and_norm(m.text.model) is None:
        raise UnsupportedDualEncoder(f"not written: text model type {m.text.model.config.model_type!r} has no "
                                     "BERT-style pooler after a final LayerNorm")


def _text_pooler_and_norm(text: nn.Module):
    """BERT/RoBERTa: (pooler, last layer's output LayerNorm), else None."""
    pooler = getattr(text, "pooler", None)
    try:
        norm = text.encoder.layer[-1].output.LayerNorm
    except (AttributeError, IndexError, TypeError):
        return None
    if pooler is None or not isinstance(getattr(pooler, "activation", None), nn.Tanh) or not isinstance(norm, nn.LayerNorm):
        return None
    return pooler, norm


@torch.no_grad()
def _text_weights(text: nn.Module, head: nn.Linear) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pooler W_p (H, H), pooler b_p (H,), text_projection (E, H)) per the module docstring."""
    _, norm = _text_pooler_and_norm(text)
    gamma, beta = norm.weight.double(), norm.bias.double()
    if bool((gamma.abs() < 1e-6).any()):
        raise UnsupportedDualEncoder("not written: the text model's final LayerNorm has a zero scale")
    H = gamma.numel()
    u = 1.0 / gamma  # (H,)
    kappa = float(u @ beta)
    basis = torch.linalg.svd(u[None, :], full_matrices=True).Vh[1:]  # (H-1, H), orthonormal, ⊥ u
    bound = float(gamma.abs().max()) * math.sqrt(H) + float(beta.norm())  # >= |z| for any LayerNorm output
    eps = 1e-4 / bound
    W, b = head.weight.double(), head.bias.double()  # (E, H), (E,)
    pooler_w = torch.zeros(H, H, dtype=torch.float64)
    pooler_w[:-1] = eps * basis
    pooler_b = torch.zeros(H, dtype=torch.float64)
    pooler_b[-1] = 30.0  # tanh(30) == 1 in float32
    proj = torch.cat([W @ basis.T / eps, (W @ u * kappa / (u @ u) + b)[:, None]], dim=1)  # (E, H)
    return pooler_w.float(), pooler_b.float(), proj.float()


def write_dual_encoder(lit, out: Path) -> Path:
    """Write ``out`` (model, tokenizer, image processor) or raise UnsupportedDualEncoder."""
    _check(lit)
    from transformers import VisionTextDualEncoderConfig, VisionTextDualEncoderModel

    m = lit.model
    vision, text = m.image.model, m.text.model
    config = VisionTextDualEncoderConfig.from_vision_text_configs(
        vision.config, text.config, projection_dim=m.embed_dim, logit_scale_init_value=float(m.logit_scale.detach()))
    if vision.config.model_type in _IDENTITY_POOLER:
        config.vision_config.pooler_act = "linear"
        config.vision_config.pooler_output_size = config.vision_config.hidden_size
    dual = VisionTextDualEncoderModel(config).eval()
    dual_vision = getattr(dual.vision_model, "vision_model", dual.vision_model)
    with torch.no_grad():
        dual_vision.load_state_dict(vision.state_dict(), strict=False)
        if vision.config.model_type in _IDENTITY_POOLER:
            dual_vision.pooler.dense.weight.copy_(torch.eye(config.vision_config.hidden_size))
            dual_vision.pooler.dense.bias.zero_()
        head = m.image_head
        dual.visual_projection.weight.copy_(head.weight if isinstance(head, nn.Linear) else torch.eye(m.embed_dim))
        dual.text_model.load_state_dict(text.state_dict(), strict=True)
        pooler_w, pooler_b, proj = _text_weights(text, m.text_head)
        dual.text_model.pooler.dense.weight.copy_(pooler_w)
        dual.text_model.pooler.dense.bias.copy_(pooler_b)
        dual.text_projection.weight.copy_(proj)
        dual.logit_scale.copy_(m.logit_scale)
    _check_vision_loaded(dual_vision, vision)
    dual.save_pretrained(out)
    m.text.tokenizer.save(out)
    _limit_tokenizer(out, m.text.tokenizer.context_length)
    image_processor(m.image.preprocess).save_pretrained(out)
    return out


_PIL_RESAMPLE = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3}  # PIL.Image.Resampling codes


def image_processor(pre):
    """A transformers image processor that reproduces ``pre`` (a littune ``Preprocess``)."""
    from transformers import CLIPImageProcessor

    if pre.resize_mode == "border":
        raise UnsupportedDualEncoder("the image tower pads images to a square (resize_mode 'border'), which "
                                     "transformers' CLIPImageProcessor cannot do")
    side = pre.resize_size
    size = {"height": side, "width": side} if pre.resize_mode == "squash" else {"shortest_edge": side}
    return CLIPImageProcessor(
        do_resize=True, size=size, resample=_PIL_RESAMPLE[pre.interpolation],
        do_center_crop=True, crop_size={"height": pre.input_size, "width": pre.input_size},
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True, image_mean=list(pre.mean),
        image_std=list(pre.std), do_convert_rgb=True)


def _check_vision_loaded(dual_vision: nn.Module, vision: nn.Module) -> None:
    """Every littune vision weight landed in the dual encoder (only ViT's pooler may differ)."""
    own = dual_vision.state_dict()
    for k, v in vision.state_dict().items():
        if not k.startswith("pooler.") and (k not in own or not torch.equal(own[k], v)):
            raise UnsupportedDualEncoder(f"not written: vision weight {k!r} has no place in the dual encoder")


def _limit_tokenizer(folder: Path, context_length: int) -> None:
    """littune truncates texts at the tower's context length: make the saved tokenizer do the same."""
    path = folder / "tokenizer_config.json"
    cfg = json.loads(path.read_text()) if path.is_file() else {}
    cfg["model_max_length"] = context_length
    path.write_text(json.dumps(cfg, indent=2))
