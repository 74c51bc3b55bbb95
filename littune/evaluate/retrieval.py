"""Image-text retrieval metrics (Recall@K and median rank), computed in chunks.

Protocol (Flickr8k/Flickr30k/COCO, as used by CLIP and LiT, arXiv 2111.07991):

* image -> text: each of the N images queries all M captions. The image is a hit
  at K when ANY of its own captions is among the top K captions.
* text -> image: each of the M captions queries all N images. The caption is a
  hit at K when its own image is among the top K images.

Scores are dot products, so embeddings are expected to be L2-normalised
(dot product == cosine similarity); this module does not normalise for you.

Hits and ties: as CLIP_benchmark 1.6.2 (``metrics/zeroshot_retrieval.py``, ``recall_at_k``) computes
them: a query is a hit at K when one of its positives is among the K candidates ``torch.topk(scores, K)``
returns, so a positive tied with negatives at the K-th place counts only where topk picks it (the
field's numbers; littune counted every tie for the positive before). ``retrieval_metrics`` (chunked)
and ``retrieval_metrics_full`` (reference: the full matrix, as CLIP_benchmark holds it) apply exactly
this rule. R@K where K reaches the number of candidates (captions for image->text, images for
text->image) is marked trivial or omitted (``degenerate.py``).

Median rank (``*_medr``) is the median of the 1-based ranks (``np.median``, so
it can be a .5 value for an even number of queries); a query's rank counts the negatives scoring
strictly above its best positive (ties in its favour: CLIP_benchmark has no median rank).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .degenerate import mark

__all__ = ["retrieval_metrics", "retrieval_metrics_full", "RECALL_KS", "RECALL_KEYS"]

RECALL_KS = (1, 5, 10)
# The metric names of retrieval, defined once: image->text and text->image Recall@K.
RECALL_KEYS = tuple(f"{d}_r{k}" for d in ("i2t", "t2i") for k in RECALL_KS)


def _check_inputs(
    image_emb: Tensor, text_emb: Tensor, text_to_image: Tensor, ks: Sequence[int]
) -> tuple[Tensor, Tensor, Tensor]:
    """Validate shapes/ranges; return float embeddings and a long index on one device."""
    if not isinstance(image_emb, Tensor) or not isinstance(text_emb, Tensor):
        raise TypeError("image_emb and text_emb must be torch.Tensor")
    if image_emb.ndim != 2 or text_emb.ndim != 2:
        raise ValueError(
            f"image_emb and text_emb must be 2-D (N, D) and (M, D); got shapes "
            f"{tuple(image_emb.shape)} and {tuple(text_emb.shape)}"
        )
    if image_emb.shape[1] != text_emb.shape[1]:
        raise ValueError(
            f"embedding dims differ: image_emb has D={image_emb.shape[1]}, "
            f"text_emb has D={text_emb.shape[1]}"
        )
    n, m = image_emb.shape[0], text_emb.shape[0]
    if n == 0 or m == 0:
        raise ValueError(f"need at least one image and one text; got N={n}, M={m}")
    t2i = torch.as_tensor(text_to_image)
    if t2i.ndim != 1 or t2i.shape[0] != m:
        raise ValueError(
            f"text_to_image must be 1-D with one entry per text (M={m}); "
            f"got shape {tuple(t2i.shape)}"
        )
    if t2i.dtype.is_floating_point or t2i.dtype == torch.bool:
        raise ValueError(f"text_to_image must be an integer tensor, got {t2i.dtype}")
    bad = ((t2i < 0) | (t2i >= n)).nonzero().flatten()
    if bad.numel():
        idx = bad[:10].tolist()
        raise ValueError(
            f"text_to_image points outside the {n} images for {bad.numel()} text(s); "
            f"first bad text indices {idx} -> image indices {t2i[bad[:10]].tolist()}"
        )
    counts = torch.bincount(t2i.cpu(), minlength=n)
    no_caption = (counts == 0).nonzero().flatten()
    if no_caption.numel():
        raise ValueError(
            f"{no_caption.numel()} image(s) have no caption in text_to_image "
            f"(first: {no_caption[:10].tolist()}); image->text recall is undefined for them"
        )
    if not ks or any(int(k) != k or k < 1 for k in ks):
        raise ValueError(f"ks must be non-empty positive integers, got {tuple(ks)}")
    # Half precision would make near-ties common; compute in at least float32.
    dtype = torch.promote_types(torch.promote_types(image_emb.dtype, text_emb.dtype), torch.float32)
    device = image_emb.device
    return image_emb.to(dtype), text_emb.to(device, dtype), t2i.to(device, torch.long)


def _summarise(i2t_hits: dict[int, np.ndarray], t2i_hits: dict[int, np.ndarray], i2t_rank: np.ndarray,
               t2i_rank: np.ndarray, ks: Sequence[int]) -> dict:
    """Per-query top-K hits and 0-based ranks -> the named metric dict (R@K marked by ``degenerate.mark``)."""
    out: dict = {}
    n, m = len(i2t_rank), len(t2i_rank)
    for k in ks:
        mark(out, f"i2t_r{int(k)}", int(k), m, "captions", float(np.mean(i2t_hits[k])) if k in i2t_hits else None)
    for k in ks:
        mark(out, f"t2i_r{int(k)}", int(k), n, "images", float(np.mean(t2i_hits[k])) if k in t2i_hits else None)
    out["i2t_medr"] = float(np.median(i2t_rank + 1))
    out["t2i_medr"] = float(np.median(t2i_rank + 1))
    out["n_images"] = int(len(i2t_rank))
    out["n_texts"] = int(len(t2i_rank))
    return out


@torch.no_grad()
def retrieval_metrics(
    image_emb: Tensor,
    text_emb: Tensor,
    text_to_image: Tensor,
    ks: Sequence[int] = RECALL_KS,
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Recall@K both ways plus median rank, never materialising the N x M matrix.

    Args:
        image_emb: (N, D) L2-normalised image embeddings.
        text_emb: (M, D) L2-normalised text embeddings.
        text_to_image: (M,) integer index of each text's image in ``image_emb``.
        ks: the K values; keys are ``i2t_r{K}`` / ``t2i_r{K}``.
        chunk_size: rows of the similarity matrix computed at once
            (peak memory ~ chunk_size x max(N, M) floats).

    Returns:
        ``{i2t_r1, i2t_r5, i2t_r10, t2i_r1, t2i_r5, t2i_r10, i2t_medr, t2i_medr,
        n_images, n_texts}`` with recalls as fractions in [0, 1].
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    img, txt, t2i = _check_inputs(image_emb, text_emb, text_to_image, ks)
    n, m = img.shape[0], txt.shape[0]

    i2t_ks, t2i_ks = [k for k in ks if k <= m], [k for k in ks if k <= n]  # topk refuses K > candidates

    # image -> text: rows are images, columns all M captions.
    i2t_rank = torch.empty(n, dtype=torch.long)
    i2t_hits = {k: torch.empty(n, dtype=torch.bool) for k in i2t_ks}
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        sim = img[start:stop] @ txt.T  # (B, M)
        rows = torch.arange(start, stop, device=img.device)
        is_pos = t2i[None, :] == rows[:, None]  # (B, M): caption belongs to this image
        for k in i2t_ks:
            i2t_hits[k][start:stop] = is_pos.gather(1, sim.topk(k, dim=1).indices).any(dim=1).cpu()
        best_pos = sim.masked_fill(~is_pos, float("-inf")).amax(dim=1)  # (B,)
        # Positives never exceed best_pos, so this counts negatives only.
        i2t_rank[start:stop] = (sim > best_pos[:, None]).sum(dim=1).cpu()

    # text -> image: rows are captions, columns all N images.
    t2i_rank = torch.empty(m, dtype=torch.long)
    t2i_hits = {k: torch.empty(m, dtype=torch.bool) for k in t2i_ks}
    for start in range(0, m, chunk_size):
        stop = min(start + chunk_size, m)
        sim = txt[start:stop] @ img.T  # (B, N)
        own = t2i[start:stop]  # (B,)
        for k in t2i_ks:
            t2i_hits[k][start:stop] = (sim.topk(k, dim=1).indices == own[:, None]).any(dim=1).cpu()
        pos = sim.gather(1, own[:, None])  # (B, 1): score of the caption's own image
        t2i_rank[start:stop] = (sim > pos).sum(dim=1).cpu()

    return _summarise({k: v.numpy() for k, v in i2t_hits.items()}, {k: v.numpy() for k, v in t2i_hits.items()},
                      i2t_rank.numpy(), t2i_rank.numpy(), ks)


def _first_positive_rank(scores: np.ndarray, is_pos: np.ndarray) -> np.ndarray:
    """0-based position of the first positive after sorting each row by score
    (descending), breaking ties with positives first. scores/is_pos: (Q, C)."""
    ranks = np.empty(scores.shape[0], dtype=np.int64)
    for q in range(scores.shape[0]):
        # np.lexsort sorts by the LAST key first: primary -score, secondary "not positive".
        order = np.lexsort((~is_pos[q], -scores[q]))
        ranks[q] = int(np.flatnonzero(is_pos[q][order])[0])
    return ranks


@torch.no_grad()
def retrieval_metrics_full(
    image_emb: Tensor,
    text_emb: Tensor,
    text_to_image: Tensor,
    ks: Sequence[int] = RECALL_KS,
) -> dict[str, float]:
    """Reference implementation: full (N, M) matrix and an explicit sort per query.

    Slow and memory-hungry by design (O(N*M) memory, a Python loop per query for the median rank);
    it exists so tests can prove ``retrieval_metrics`` matches it exactly.
    """
    img, txt, t2i = _check_inputs(image_emb, text_emb, text_to_image, ks)
    scores = txt @ img.T  # (M, N), as CLIP_benchmark holds it; image->text reads its transpose
    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[torch.arange(len(scores)), t2i] = True  # (M, N)
    hits = {}
    for name, sc, pos in (("t2i", scores, positive), ("i2t", scores.T, positive.T)):
        hits[name] = {k: pos.gather(1, sc.topk(k, dim=1).indices).any(dim=1).cpu().numpy()
                      for k in ks if k <= sc.shape[1]}
    sim, is_pos = scores.T.cpu().numpy(), positive.T.cpu().numpy()  # (N, M)
    i2t_rank = _first_positive_rank(sim, is_pos)
    t2i_rank = _first_positive_rank(sim.T, is_pos.T)
    return _summarise(hits["i2t"], hits["t2i"], i2t_rank, t2i_rank, ks)
