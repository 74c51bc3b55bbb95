"""Zero-shot classification with a prompt-ensembled text classifier.

Protocol (CLIP, arXiv 2103.00020 Sec. 3.1.4; reused by LiT, arXiv 2111.07991):
each class name is written into every prompt template ("a photo of a {}."),
each prompt is embedded by the text tower and L2-normalised, the T prompt
embeddings of a class are averaged and the mean is L2-normalised again. The
resulting (C, D) matrix is a linear classifier over L2-normalised image
embeddings: the predicted class is the row with the highest cosine similarity.

A class may have several names (aliases, ``["rose", "garden rose"]``). As in big_vision's
zero-shot evaluator (``discriminative_classifier.py``: aliases expanded, then one average per
class), every alias is written into every template and the class row is the mean of ALL its
A x T normalised prompt embeddings, normalised once at the end. Each alias has T prompts, so every
alias and every template weigh the same; the per-alias means are NOT renormalised before they are
averaged (a tested choice: renormalising would give an alias whose prompts disagree more weight).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .degenerate import mark

__all__ = ["build_classifier", "zeroshot_metrics", "validate_templates", "check_prompt_identity", "token_rows"]


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
        if t.count("{}") > 1:
            raise ValueError(f"template {i} ({t!r}) has {t.count('{}')} '{{}}' placeholders; give exactly one")
    return templates


def _validate_aliases(classnames: Sequence[str | Sequence[str]],
                      repeats: Sequence[tuple[int, int]] = ()) -> list[list[str]]:
    """Each class as a list of one or more names; a plain string is one name. ``repeats``: class
    index pairs allowed to share their names (CLIP's own list repeats two)."""
    if isinstance(classnames, str):
        raise TypeError("classnames must be a list of strings or of alias lists, not a single string")
    classes = [[c] if isinstance(c, str) else list(c) for c in classnames]
    if not classes:
        raise ValueError("classnames is empty; need at least one class")
    for i, names in enumerate(classes):
        if not names or not all(isinstance(n, str) and n.strip() for n in names):
            raise ValueError(f"classname {i} has an empty name or is not a string: {classnames[i]!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"classname {i} lists a name twice: {names!r}")
    allowed = {frozenset(p) for p in repeats}
    firsts = [names[0] if not any(i in p for p in allowed) else f"{names[0]}\x00{i}" for i, names in enumerate(classes)]
    _validate_classnames(firsts)  # first names label the results
    seen: dict[frozenset, int] = {}
    for i, names in enumerate(classes):
        j = seen.setdefault(frozenset(names), i)
        if j != i and frozenset((i, j)) not in allowed:  # the same names in another order: identical rows
            raise ValueError(f"classes {j} and {i} have the same names {sorted(names)}")
    return classes


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


def token_rows(tokenizer: Callable[[list[str]], dict[str, Tensor]]) -> Callable[[list[str]], list[tuple[int, ...]]]:
    """A littune tokenizer (``texts -> {input_ids, attention_mask}`` (B, T)) as ``texts -> [token ids]``,
    padding dropped: what the text tower reads of each text."""

    def rows(texts: list[str]) -> list[tuple[int, ...]]:
        out: list[tuple[int, ...]] = []
        for start in range(0, len(texts), 4096):
            tok = tokenizer(texts[start:start + 4096])
            ids, mask = tok["input_ids"], tok["attention_mask"].bool()
            out += [tuple(ids[i][mask[i]].tolist()) for i in range(ids.shape[0])]
        return out

    return rows


def _outside_this_module() -> int:
    """``warnings.warn``'s stacklevel, from its caller, of the first frame outside this file and torch
    (a fixed number would depend on the path: direct, through build_classifier, under a wrapper)."""
    frame, level = sys._getframe(1), 1
    torch_dir = f"{os.sep}torch{os.sep}"
    while frame is not None and (frame.f_code.co_filename == __file__ or torch_dir in frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    return level


def check_prompt_identity(tokenize: Callable[[list[str]], list[tuple[int, ...]]], classes: list[list[str]],
                          templates: list[str], labels: Sequence[str] | None = None,
                          repeats: Sequence[tuple[int, int]] = ()) -> None:
    """Refuse two classes whose prompts are the same token ids (identical classifier rows: one of them
    could never be predicted), as the text tower sees them: after its own canonicalisation and
    tokenizer, so "Cardigan" and "cardigan" collide for an uncased tower. ``repeats`` (class index
    pairs) are allowed and named in one warning: CLIP's list repeats two names, and published figures
    keep them. The warning names the first line outside this module (whoever called it or
    :func:`build_classifier`)."""
    labels = list(labels) if labels is not None else [names[0] for names in classes]
    prompts = [t.replace("{}", name) for names in classes for name in names for t in templates]
    ids = iter(tokenize(prompts))
    # A class's row depends on the multiset of its prompts' tokens (the mean ignores order).
    keys = [tuple(sorted(next(ids) for _ in range(len(names) * len(templates)))) for names in classes]
    first: dict[tuple, int] = {}
    allowed = {frozenset(p) for p in repeats}
    warned = []
    for i, key in enumerate(keys):
        j = first.setdefault(key, i)
        if j == i:
            continue
        if frozenset((i, j)) in allowed:
            warned.append(f"{labels[j]!r} ({j}) and {labels[i]!r} ({i})")
            continue
        raise ValueError(
            f"classes {labels[j]!r} ({j}) and {labels[i]!r} ({i}) give the same prompts to this text tower "
            f"(same tokens after its tokenizer and canonicalisation), so one could never be predicted; "
            f"name them apart in a classnames file (folder,name;alias lines), e.g. '{labels[i]} (2)'")
    if warned:
        warnings.warn(f"CLIP's ImageNet names repeat for {'; '.join(warned)}: kept verbatim as published figures "
                      "use them (identical classifier rows)", UserWarning, stacklevel=_outside_this_module())


def build_classifier(
    encode_texts: Callable[[list[str]], Tensor],
    classnames: Sequence[str | Sequence[str]],
    templates: Sequence[str],
    batch_size: int = 256,
    tokenize: Callable[[list[str]], list[tuple[int, ...]]] | None = None,
    labels: Sequence[str] | None = None,
    repeats: Sequence[tuple[int, int]] = (),
) -> Tensor:
    """Build the (C, D) zero-shot classifier by prompt ensembling.

    Args:
        encode_texts: maps a list of B strings to a (B, D) tensor of text embeddings
            (need not be normalised; each is L2-normalised here).
        classnames: C classes, each a human-readable name or a list of aliases
            (``["rose", "garden rose"]``; averaged as the module docstring says).
        templates: T templates, each containing ``{}`` where the class name goes.
        batch_size: max prompts per ``encode_texts`` call; the sum over classes of A_c*T
            prompts is sent in batches regardless of class boundaries.
        tokenize: the text tower's own tokenizer as ``texts -> token id tuples`` (see
            :func:`token_rows`); given, two classes whose prompts reach the tower as the same tokens
            are refused (:func:`check_prompt_identity`).
        labels: the C display names used in those errors (default: each class's first name).
        repeats: class index pairs allowed to collide, with one warning (CLIP's known repeats).

    Returns:
        (C, D) float32 tensor with L2-normalised rows, on the device ``encode_texts`` used.
    """
    classes = _validate_aliases(classnames, repeats)
    templates = validate_templates(templates)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if tokenize is not None:
        check_prompt_identity(tokenize, classes, templates, labels, repeats)
    # Class-major, then alias, then template. str.replace (not .format) so that other braces in a
    # template or class name are left untouched.
    prompts = [t.replace("{}", name) for names in classes for name in names for t in templates]
    owner = torch.tensor([c for c, names in enumerate(classes) for _ in range(len(names) * len(templates))])
    chunks: list[Tensor] = []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start : start + batch_size]
            emb = encode_texts(batch)
            if not isinstance(emb, Tensor) or emb.ndim != 2 or emb.shape[0] != len(batch):
                shape = tuple(emb.shape) if isinstance(emb, Tensor) else type(emb).__name__
                raise ValueError(f"encode_texts returned {shape} for {len(batch)} prompts; expected (B, D)")
            chunks.append(F.normalize(emb.float(), dim=-1))  # (B, D), unit rows
        emb = torch.cat(chunks)  # (P, D), P = sum over classes of A_c * T
        owner = owner.to(emb.device)
        sums = torch.zeros(len(classes), emb.shape[1], device=emb.device).index_add_(0, owner, emb)  # (C, D)
        counts = torch.bincount(owner, minlength=len(classes)).to(emb.dtype)  # (C,) = A_c * T
        return F.normalize(sums / counts[:, None], dim=-1)  # (C, D)


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

    Returns (as CLIP_benchmark's ``zeroshot_classification.evaluate`` defines them; its acc1, acc5,
    mean_per_class_recall):
        ``top1``; ``top5`` (with C >= 5; at C == 5 it is 1.0 by construction and listed in ``trivial``,
        below 5 it is listed in ``omitted``: ``degenerate.py``'s rule); ``mean_per_class`` (recall
        averaged over the classes that have test images: sklearn's ``balanced_accuracy_score``); ``n``,
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
    if c < 2:
        raise ValueError(f"zero-shot classification needs at least 2 classes, got {c} ({classnames}): with one "
                         "class every image is 'right' and top-1 would read 1.0")
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
    out: dict = {"top1": int(hit1.sum()) / n}  # counts over N: no float32 rounding
    mark(out, "top5", 5, c, "classes", int(hitk.sum()) / n)  # trivial at C == 5, omitted below
    out |= {
        "mean_per_class": float((correct[present].double() / support[present].double()).mean()),
        "n": n,
        "n_classes": c,
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }
    if return_predictions:
        out["predictions"] = pred.tolist()
    return out
