"""Batched encoding with a trained model: texts, cached image features, or image files.

Shared by training (dev evaluation), the evaluators and inference, so every path encodes the
same way (eval mode, no gradients, fixed batch sizes).
"""
from __future__ import annotations

from typing import Sequence

import torch

from .model import LiTModel


@torch.no_grad()
def encode_texts(model: LiTModel, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """(N,) strings -> (N, E) L2-normalised text embeddings."""
    was_training = model.training
    model.eval()
    device = model.logit_scale.device
    out = [model.encode_text({k: v.to(device) for k, v in model.tokenize(list(texts[i:i + batch_size])).items()}).cpu()
           for i in range(0, len(texts), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, model.embed_dim)


@torch.no_grad()
def encode_features(model: LiTModel, features: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """(N, D_img) tower features (e.g. from the cache) -> (N, E) L2-normalised image embeddings."""
    was_training = model.training
    model.eval()
    device = model.logit_scale.device
    out = [model.encode_image_features(features[i:i + batch_size].to(device)).cpu()
           for i in range(0, len(features), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, model.embed_dim)


def _device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


@torch.no_grad()
def tower_features(tower, images: Sequence, batch_size: int = 64, num_workers: int = 1,
                   progress: bool = False, desc: str = "embed") -> tuple[torch.Tensor, list[int], list]:
    """Run an image tower over images (paths or bytes): (features (n_ok, D), kept indices, bad).

    Used where no cache applies (an unlocked tower changes at every step). Bad images are skipped.
    """
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from .data.decode import DecodeDataset, collate_decoded

    names = [im if isinstance(im, str) else f"image {i}" for i, im in enumerate(images)]
    ds = DecodeDataset(images, names=names, transform=tower.preprocess.transform())
    loader = DataLoader(ds, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_decoded)
    was_training = tower.training
    tower.eval()
    feats, kept, bad = [], [], []
    for idx, x, b in tqdm(loader, desc=desc, disable=not progress, unit="batch"):
        bad += [(str(i), reason) for i, reason in b]
        if idx:
            feats.append(tower(x[:, 0].to(_device(tower))).float().cpu())
            kept += idx
    tower.train(was_training)
    return (torch.cat(feats) if feats else torch.zeros(0, tower.embed_dim)), kept, bad
