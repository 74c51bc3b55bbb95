"""One rule for figures that measure nothing: top-K and R@K where K reaches the number of candidates.

A query is a top-K (or R@K) hit when its answer is among the K best of ``n`` candidates. With
``K >= n`` every query is a hit by construction, so the figure is 1.0 whatever the model. The rule,
for every metric (zero-shot top-5; retrieval R@K both ways):

    K <  n   reported
    K == n   reported for parity with the field's protocol (CLIP_benchmark reports top-5 at exactly 5
             classes; ``torch.topk`` accepts K == n) and marked trivial, with the reason
    K >  n   omitted (CLIP_benchmark gives NaN for top-5 under 5 classes; ``torch.topk`` refuses), with
             the reason

Marks travel in the metrics themselves, so the JSON, the printed table and the report all show them:
``metrics["trivial"]`` and ``metrics["omitted"]`` map a metric name to its reason.
Zero-shot with fewer than two classes is no classification at all and is refused (``zeroshot``).
"""
from __future__ import annotations

__all__ = ["rank_figure", "mark"]


def rank_figure(k: int, n: int, what: str) -> tuple[str, str | None]:
    """``("ok", None)``, ``("trivial", reason)`` or ``("omitted", reason)`` for a top-``k`` figure
    over ``n`` candidates (``what`` names them: "classes", "captions", "images")."""
    if k < n:
        return "ok", None
    if k == n:
        return "trivial", f"K={k} equals the {n} {what}: every query is a hit by construction (kept for parity)"
    return "omitted", f"K={k} exceeds the {n} {what}: undefined"


def mark(metrics: dict, name: str, k: int, n: int, what: str, value=None) -> None:
    """Put ``name`` into ``metrics`` (``value``) or into its ``omitted`` list, and the reason into
    ``trivial``/``omitted`` as :func:`rank_figure` decides."""
    status, reason = rank_figure(k, n, what)
    if status == "omitted":
        metrics.setdefault("omitted", {})[name] = reason
        return
    metrics[name] = value
    if status == "trivial":
        metrics.setdefault("trivial", {})[name] = reason
