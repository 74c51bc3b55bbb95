"""Class anchors: what the locked image tower's own classifier knows, handed to the text side.

A locked ImageNet model carries, beside its features, a classifier: one weight vector per class in
the very feature space the text head learns to reach. Image-text pairs from a small caption set
(Flickr8k: people, dogs, bikes) name few of those classes, so the head has to guess where "a photo
of a daisy" lands. Class anchors tell it: each step draws ``train.anchors.classes`` of the
classifier's 1,000 classes, embeds a prompt of each ("a photo of a {name}.", CLIP's ImageNet names)
through the text head, and adds a symmetric cross-entropy between those prompts and the classes'
weight directions (``scale`` * cosine, the diagonal positive), weighted by ``train.anchors.weight``.

The target of class c is the image embedding a perfect prompt would have: for a concatenation of
towers, each member's weight row L2-normalised and scaled by the member's weight, concatenated and
L2-normalised, so cos(image, target_c) is the (bias-free) average of the members' cosine logits.
No image, caption or label beyond the tower's own weights and class names is used; the prompts'
features come from the locked text tower once, through a text cache like every caption's.

Each step's draw is a function of (seed, step, rank) only, so a resumed run draws as an uninterrupted
one. Measured on the demo's recipe (docs/studies.md, the anchors studies), three seeds each: flowers/train
zero-shot 45.1% -> 48.4% (128 classes a step, one template), Flickr8k dev R@1 unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ANCHOR_TAG = 0x616E63  # "anc": the anchors' own random stream


def classifier_targets(tower) -> torch.Tensor:
    """(C, D) unit rows: each class' direction in ``tower``'s (pre-normalisation) feature space."""
    members = list(getattr(tower, "members", None) or [tower])
    weights = list(getattr(tower, "weights", None) or [1.0] * len(members))
    rows = []
    for member, w in zip(members, weights):
        model = getattr(member, "model", None)
        fc = model.get_classifier() if hasattr(model, "get_classifier") else None
        pooled = getattr(member, "pooling", "default") == "default"  # the features the classifier reads
        if not isinstance(fc, torch.nn.Linear) or fc.out_features != 1000 or fc.in_features != member.embed_dim \
                or not pooled:
            raise ValueError(f"train.anchors needs the image tower's ImageNet-1k classifier on its pooled features; "
                             f"{member.name} has {'none' if not isinstance(fc, torch.nn.Linear) else tuple(fc.weight.shape)} "
                             "(a timm tower with its 1,000-class head, pooling default)")
        rows.append(float(w) * F.normalize(fc.weight.detach().float(), dim=-1))
    if len(members) > 1 and not getattr(tower, "normalize", True):
        raise ValueError("train.anchors with a concatenation of towers needs model.image.concat_normalize=true: "
                         "raw features of two towers have no common scale for one target")
    return F.normalize(torch.cat(rows, dim=1), dim=-1)


def anchor_prompts(names: list[str], templates: list[str]) -> list[str]:
    """Template-major: prompt (t, c) is row ``t * C + c``."""
    return [t.replace("{}", n) for t in templates for n in names]


@dataclass
class Anchors:
    features: torch.Tensor  # (T, C, D_txt) the locked text tower's features of every prompt
    targets: torch.Tensor  # (C, E) unit rows in the image embedding space
    classes: int  # drawn per step
    scale: float
    weight: float
    seed: int

    def draw(self, step: int, rank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(text features (n, D_txt), targets (n, E)) of this step's classes, each with one template."""
        n_templates, n_classes, _ = self.features.shape
        rng = np.random.default_rng([self.seed, step, rank, ANCHOR_TAG])
        dev = self.features.device
        idx = torch.from_numpy(rng.permutation(n_classes)[:min(self.classes, n_classes)]).to(dev)
        tmpl = torch.from_numpy(rng.integers(n_templates, size=len(idx))).to(dev)
        return self.features[tmpl, idx], self.targets[idx]

    def loss(self, prompts: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Symmetric cross-entropy of (n, E) prompt embeddings against their (n, E) targets, times ``weight``."""
        logits = self.scale * (F.normalize(prompts.float(), dim=-1) @ targets.T)  # (n, n)
        y = torch.arange(len(logits), device=logits.device)
        return self.weight * 0.5 * (F.cross_entropy(logits, y) + F.cross_entropy(logits.T, y))


def build_anchors(cfg, model, cache_root: str | Path | None, device: torch.device | str = "cpu",
                  progress: bool = True) -> Anchors:
    """``cfg``: the experiment config (train.anchors on). Prompt features from a text cache under the
    cache root, one folder per prompt set and (as a caption cache) per text tower identity, made once and
    reused by every later run; features and targets on ``device``, where the steps draw from them."""
    from ..cache.naming import default_cache_root
    from ..cache.text import TextEmbedOptions, ensure_text_cache, text_cache_dir, texts_sha256
    from ..evaluate.imagenet import imagenet_names
    from ..evaluate.templates import get_templates

    a = cfg.train.anchors
    targets = classifier_targets(model.image)
    names, templates = imagenet_names("clip"), get_templates(a.templates)
    texts = anchor_prompts(names, templates)
    root = Path(cache_root) if cache_root else default_cache_root()
    folder = text_cache_dir(root / f"anchors-{texts_sha256(texts)[:12]}", model.text)
    cache = ensure_text_cache(texts, model.text, folder, TextEmbedOptions(engine=cfg.data.engine, progress=progress))
    features = cache.all().reshape(len(templates), len(names), -1)
    if model.embed_dim != targets.shape[1]:
        raise ValueError(f"train.anchors: the model's embedding is {model.embed_dim}-d and the image tower's "
                         f"classifier directions {targets.shape[1]}-d (needs model.image.head=none)")
    return Anchors(features.to(device), targets.to(device), a.classes, a.scale, a.weight, cfg.train.seed)
