"""Zero-shot classification with a prompt-ensembled text classifier.

Protocol (CLIP, arXiv 2103.00020 Sec. 3.1.4; reused by LiT, arXiv 2111.07991):
each class name is written into every prompt template ("a photo of a {}."),
each prompt is embedded by the text tower and L2-normalised, the T prompt
embeddings of a class are averaged and the mean is L2-normalised again. The
resulting (C, D) matrix is a linear classifier over L2-normalised image
embeddings: the predicted class is the row with the highest cosine similarity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["build_classifier", "zeroshot_metrics", "validate_templates"]


def validate_templates(templates: Sequence[str]) -> list[str]:
    """Check that ``templates`` is a non-empty list of strings each containing ``{}``."""
    if isinstance(templates, str):
        raise TypeError("templates must be a list of strings, not a single string")
    templates = list(templates)
    if not templates:
        raise ValueError("templates is empty; need at least one prompt template like 'a photo of a {}.'")
    for i, t in enumerate(templates):
        if not isinstance(t, str) or "{}" not in t:
            raise ValueError(f"template {i} ({t!r}) has no '{{}}' placeholder for the class name")
    return templates


def _validate_classnames(classnames: Sequence[str]) -> list[str]:
    if isinstance(classnames, str):
        raise TypeError("classnames must be a list of strings, not a single string")
    classnames = list(classnames)
    if not classnames:
        raise ValueError("classnames is empty; need at least one class")
    for i, c in enumerate(classnames):
        if not isinstance(c, str) or not c.strip():
            raise ValueError(f"classname {i} is empty or not a string: {c!r}")
    seen: dict[str, int] = {}
    for i, c in enumerate(classnames):
        if c in seen:
            # Identical names give identical classifier rows: the classes could never be told apart.
            raise ValueError(f"duplicate classname {c!r} at indices {seen[c]} and {i}")
        seen[c] = i
    return classnames


@torch.no_grad()
def build_classifier(
    encode_texts: Callable[[list[str]], Tensor],
    classnames: Sequence[str],
    templates: Sequence[str],
    batch_size: int = 256,
) -> Tensor:
    """Build the (C, D) zero-shot classifier by prompt ensembling.

    Args:
        encode_texts: maps a list of B strings to a (B, D) tensor of text embeddings
            (need not be normalised; each is L2-normalised here).
        classnames: C human-readable class names.
        templates: T templates, each containing ``{}`` where the class name goes.
        batch_size: max prompts per ``encode_texts`` call; the C*T prompts are sent
            in ceil(C*T / batch_size) calls regardless of class boundaries.

    Returns:
        (C, D) float32 tensor with L2-normalised rows, on the device ``encode_texts`` used.
    """
    classnames = _validate_classnames(classnames)
    templates = validate_templates(templates)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    # Class-major order: prompt index = c * T + t. str.replace (not .format) so that
    # other braces in a template or class name are left untouched.
    prompts = [t.replace("{}", c) for c in classnames for t in templates]
    chunks: list[Tensor] = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        emb = encode_texts(batch)
        if not isinstance(emb, Tensor) or emb.ndim != 2 or emb.shape[0] != len(batch):
            shape = tuple(emb.shape) if isinstance(emb, Tensor) else type(emb).__name__
            raise ValueError(f"encode_texts returned {shape} for {len(batch)} prompts; expected (B, D)")
        chunks.append(F.normalize(emb.float(), dim=-1))  # (B, D), unit rows
    emb = torch.cat(chunks)  # (C*T, D)
    per_class = emb.view(len(classnames), len(templates), -1)  # (C, T, D)
    return F.normalize(per_class.mean(dim=1), dim=-1)  # (C, D)


@torch.no_grad()
def zeroshot_metrics(
    image_emb: Tensor,
    labels: Tensor,
    classifier: Tensor,
    classnames: Sequence[str],
    return_predictions: bool = False,
    chunk_size: int = 4096,
) -> dict:
    """Zero-shot accuracy of ``classifier`` on labelled image embeddings.

    Args:
        image_emb: (N, D) L2-normalised image embeddings.
        labels: (N,) integer true class indices into ``classnames``.
        classifier: (C, D) output of :func:`build_classifier`.
        classnames: the C names (keys of ``per_class``).
        return_predictions: also return ``predictions`` (list of N top-1 class indices).
        chunk_size: images scored at once (memory ~ chunk_size x C floats).

    Returns:
        ``top1``, ``top5`` (only with more than 5 classes: with C <= 5 every image would be a
        top-5 hit, and 1.0 would read as a result), ``mean_per_class`` (mean over classes that have test images), ``n``,
        ``per_class`` {name: accuracy} for classes with at least one image,
        ``confusion`` (C x C list of int lists, rows = true class, cols = predicted).
    """
    classnames = _validate_classnames(classnames)
    if image_emb.ndim != 2 or classifier.ndim != 2:
        raise ValueError(
            f"image_emb must be (N, D) and classifier (C, D); got {tuple(image_emb.shape)} "
            f"and {tuple(classifier.shape)}"
        )
    n, c = image_emb.shape[0], classifier.shape[0]
    if image_emb.shape[1] != classifier.shape[1]:
        raise ValueError(f"embedding dims differ: images D={image_emb.shape[1]}, classifier D={classifier.shape[1]}")
    if c != len(classnames):
        raise ValueError(f"classifier has {c} rows but {len(classnames)} classnames were given")
    if n == 0:
        raise ValueError("image_emb is empty; need at least one image")
    labels = torch.as_tensor(labels).to(torch.long).cpu()
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"labels must be 1-D with one entry per image (N={n}); got {tuple(labels.shape)}")
    bad = ((labels < 0) | (labels >= c)).nonzero().flatten()
    if bad.numel():
        raise ValueError(
            f"{bad.numel()} label(s) outside [0, {c}); first at image {bad[0].item()}: {labels[bad[0]].item()}"
        )

    k = min(5, c)
    dtype = torch.promote_types(image_emb.dtype, torch.float32)
    weights = classifier.to(image_emb.device, dtype)
    topk = torch.empty(n, k, dtype=torch.long)
    for start in range(0, n, chunk_size):
        logits = image_emb[start : start + chunk_size].to(dtype) @ weights.T  # (B, C)
        topk[start : start + chunk_size] = logits.topk(k, dim=1).indices.cpu()  # (B, k), best first
    pred = topk[:, 0]  # (N,)
    hit1 = pred == labels
    hitk = (topk == labels[:, None]).any(dim=1)

    confusion = torch.bincount(labels * c + pred, minlength=c * c).view(c, c)  # rows = true class
    support = confusion.sum(dim=1)  # (C,)
    correct = confusion.diagonal()
    present = support > 0
    per_class = {
        name: float(correct[i] / support[i]) for i, name in enumerate(classnames) if present[i]
    }
    out: dict = {
        "top1": float(hit1.float().mean()),
        **({"top5": float(hitk.float().mean())} if c > 5 else {}),  # with C <= 5 it is 1.0 by construction
        "mean_per_class": float((correct[present].float() / support[present].float()).mean()),
        "n": n,
        "n_classes": c,
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }
    if return_predictions:
        out["predictions"] = pred.tolist()
    return out
