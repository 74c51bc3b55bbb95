"""Batched encoding with a trained model: texts, cached image features, or image files.

Shared by training (dev evaluation), the evaluators and inference, so every path encodes the
same way (eval mode, no gradients, fixed batch sizes).
"""
from __future__ import annotations

from typing import Sequence

import torch

from .model import LiTModel


def encode_texts(model: LiTModel, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """(N,) strings -> (N, E) L2-normalised text embeddings."""
    device = model.logit_scale.device
    texts = list(texts)
    return _batched_eval(model, lambda sl: model.encode_text({k: v.to(device) for k, v in model.tokenize(texts[sl]).items()}),
                         len(texts), batch_size)


@torch.no_grad()
def _batched_eval(model: LiTModel, encode, n: int, batch_size: int) -> torch.Tensor:
    """``encode(slice) -> (b, E)`` over ``n`` rows in eval mode, concatenated on the CPU."""
    was_training = model.training
    model.eval()
    out = [encode(slice(i, i + batch_size)).cpu() for i in range(0, n, batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, model.embed_dim)


def encode_features(model: LiTModel, features: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """(N, D_img) tower features (e.g. from the cache) -> (N, E) L2-normalised image embeddings."""
    device = model.logit_scale.device
    return _batched_eval(model, lambda sl: model.encode_image_features(features[sl].to(device)), len(features),
                         batch_size)


def encode_text_features(model: LiTModel, features: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """(N, D_txt) text tower features (e.g. from a text cache) -> (N, E) L2-normalised text embeddings."""
    device = model.logit_scale.device
    return _batched_eval(model, lambda sl: model.encode_text_features(features[sl].to(device)), len(features),
                         batch_size)


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
    from .data.workers import loader_workers

    names = [im if isinstance(im, str) else f"image {i}" for i, im in enumerate(images)]
    ds = DecodeDataset(images, names=names, transform=tower.preprocess.transform())
    loader = DataLoader(ds, batch_size=batch_size, **loader_workers(num_workers), collate_fn=collate_decoded)
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
