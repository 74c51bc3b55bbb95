"""Periodic dev-split retrieval during training (R@K, Flickr8k/COCO protocol).

With a locked image tower the dev images come from the cache (embedded once); with an unlocked
tower they are re-embedded at each evaluation, since the tower changes.
"""
from __future__ import annotations

import torch

from ..cache import load_items
from ..encode import encode_features, encode_texts, tower_features
from ..evaluate.retrieval import retrieval_metrics
from ..model import LiTModel
from .config import ExperimentConfig
from .data import open_cache


class DevEvaluator:
    def __init__(self, model: LiTModel, captions: list[list[str]], features=None, images=None,
                 progress: bool = False):
        self.model, self.features, self.images, self.progress = model, features, images, progress
        self.texts = [c for caps in captions for c in caps]
        self.text_to_image = torch.tensor([i for i, caps in enumerate(captions) for _ in caps])

    @classmethod
    def create(cls, cfg: ExperimentConfig, model: LiTModel, progress: bool = False) -> "DevEvaluator":
        if model.image.locked:
            cache = open_cache(cfg.data, model.image, "dev", progress=progress)
            return cls(model, cache.captions, features=cache.all(), progress=progress)
        items, _ = load_items(cfg.data.dev)
        return cls(model, [it.captions for it in items], images=[it.image for it in items], progress=progress)

    def __call__(self) -> dict:
        feats = self.features
        t2i = self.text_to_image
        if feats is None:
            feats, kept, _bad = tower_features(self.model.image, self.images, progress=self.progress,
                                               desc="dev images")
            remap = torch.full((len(self.images),), -1, dtype=torch.long)
            remap[torch.tensor(kept)] = torch.arange(len(kept))
            t2i = remap[t2i]
            keep = t2i >= 0
            texts = [t for t, k in zip(self.texts, keep.tolist()) if k]
            t2i = t2i[keep]
        else:
            texts = self.texts
        img = encode_features(self.model, feats)
        txt = encode_texts(self.model, texts)
        m = retrieval_metrics(img, txt, t2i)
        return {k: v for k, v in m.items() if k.startswith(("i2t_r", "t2i_r"))}
