"""CLIP_benchmark 1.6.2's own metric code as the reference of the parity tests, run through open_clip.

Only one thing is changed: its ``accuracy`` helper calls ``float()`` on a one-element numpy array,
which numpy 2 refuses; :func:`accuracy_numpy2` hands it that element instead (the rest is its code).
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch


@contextlib.contextmanager
def accuracy_numpy2():
    """While active, ``zeroshot_classification.accuracy``'s ``float(array of shape (1,))`` works."""
    from clip_benchmark.metrics import zeroshot_classification as zc

    real = float
    zc.float = lambda x: real(np.asarray(x).reshape(-1)[0]) if hasattr(x, "shape") else real(x)
    try:
        yield zc
    finally:
        del zc.float


def open_clip_model(folder: Path):
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    return model.eval(), preprocess, open_clip.get_tokenizer(f"local-dir:{folder}")


def zeroshot(folder: Path, images: Path, classnames: list[str], templates: list[str]) -> dict:
    """CLIP_benchmark's ``zeroshot_classification.evaluate`` on an image folder (torchvision's
    ImageFolder, as its builder reads folders); templates in littune's ``{}`` form."""
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    model, preprocess, tokenizer = open_clip_model(folder)
    loader = DataLoader(ImageFolder(str(images), transform=preprocess), batch_size=64)
    with accuracy_numpy2() as zc, torch.no_grad():
        return zc.evaluate(model, loader, tokenizer, classnames, [t.replace("{}", "{c}") for t in templates],
                           "cpu", amp=False)


def retrieval(folder: Path, items: list[tuple[Path, list[str]]]) -> dict:
    """CLIP_benchmark's ``zeroshot_retrieval.evaluate`` on (image, captions) pairs."""
    from clip_benchmark.metrics import zeroshot_retrieval as zr
    from PIL import Image
    from torch.utils.data import DataLoader

    model, preprocess, tokenizer = open_clip_model(folder)

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return len(items)

        def __getitem__(self, i):
            return preprocess(Image.open(items[i][0]).convert("RGB")), items[i][1]

    loader = DataLoader(Pairs(), batch_size=64, collate_fn=lambda b: (torch.stack([x for x, _ in b]), [c for _, c in b]))
    with torch.no_grad():
        return zr.evaluate(model, loader, tokenizer, "cpu", amp=False, recall_k_list=[1, 5, 10])
