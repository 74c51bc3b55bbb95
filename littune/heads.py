"""The heads that map each tower's pooled features into the shared embedding space.

    none     identity (the paper's best image side: the locked features as they are)
    linear   one linear map (open_clip's ``proj_type: linear`` when it has no bias)
    mlp      depth-1 hidden layers of width ``hidden`` with GELU, then a linear map to the output
             (FuseMix, arXiv 2312.10144, trains such heads on two frozen encoders; with ``bias:
             false`` and ``hidden`` = (in + out) // 2 it is open_clip's ``proj_type: mlp`` text head)

Heads are small: on two caches they are all that trains, so a step is a few matrix products.
"""
from __future__ import annotations

from torch import nn

HEAD_KINDS = ("none", "linear", "mlp")


def default_hidden(d_in: int, d_out: int) -> int:
    """open_clip's hidden width for an MLP projection: halfway between its input and output."""
    return (d_in + d_out) // 2


def make_head(kind: str, d_in: int, d_out: int, *, hidden: int = 0, depth: int = 2, bias: bool = True,
              dropout: float = 0.0, where: str = "head") -> nn.Module:
    """A head from its config; ``where`` names the config key in errors (``model.text.head``)."""
    if kind == "none":
        if d_in != d_out:
            raise ValueError(f"{where}=none needs equal sizes, but {d_in} features must map to {d_out} "
                             f"(set {where}=linear or mlp, or model.embed_dim={d_in})")
        return nn.Identity()
    if kind == "linear":
        return nn.Linear(d_in, d_out, bias=bias)
    if kind == "mlp":
        if depth < 2:
            raise ValueError(f"{where}_depth must be >= 2 for an MLP (1 is 'linear'), got {depth}")
        width = hidden or default_hidden(d_in, d_out)
        layers: list[nn.Module] = []
        d = d_in
        for _ in range(depth - 1):  # (B, d) -> (B, width)
            layers += [nn.Linear(d, width, bias=bias), nn.GELU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            d = width
        layers.append(nn.Linear(d, d_out, bias=bias))  # (B, width) -> (B, d_out)
        return nn.Sequential(*layers)
    raise ValueError(f"{where}='{kind}' is not a head; use one of {', '.join(HEAD_KINDS)}")
