"""Locked towers made of other locked towers (issue 23): several views averaged, several towers concatenated.

Both read ONE decoded image and look at it several ways, each part through its own ``Preprocess``:

- ``AveragedViewsTower``: one tower, several views of the image (``model.image.averaged_views``, e.g.
  the centre square, the whole image squashed, the whole image padded); its features are the mean of
  the tower's features over the views, (B, D). Not ``data.views``: those are *augmented* random crops
  stored beside the plain view as extra training rows; these are fixed views folded into one row.
- ``ConcatImageTower``: several towers (``model.image.name`` then ``model.image.concat``), each at its
  own input size, crop, interpolation and normalisation; its features are theirs concatenated in that
  order, (B, D_1 + ... + D_k), each L2-normalised first by default (``model.image.concat_normalize``):
  the text side's cosine then weighs every member equally, cos(concat(a/|a|, b/|b|)) = (cos a + cos b) / 2,
  whatever the scale of each tower's features (raw, a tower with larger activations would dominate).
  A member's ``weight`` (``model.image.concat[i].weight``, model.image's own is 1) scales its
  normalised features, so cos = (cos a + w^2 cos b) / (1 + w^2) for a text embedding that splits the same way.

What the parts share, and must: the decoded RGB image (one decode per image, so one bad-input verdict
and one SHA-256 in the cache), the lock (``L``: the whole is one locked tower whose features are cached)
and the kind of preprocessing: every part is a littune ``Preprocess`` (an 8-bit geometric half and a
normalisation), because the parts' pixels travel from the decode workers to the tower packed in one
uint8 row (``PackedPreprocess``). A tower with transforms of its own (open_clip's) cannot be a part.
What they need not share: input size, crop_pct, resize_mode, interpolation, mean/std, backend.

Identity, so caches made otherwise are refused: the name lists the parts in order (and the
normalisation and any weight other than 1), the weight fingerprint hashes every part's weights under its position
(``members.0.*``, ``members.1.*``), and the manifest's ``preprocess`` is every part's, in order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from .image import ImageTower
from .preprocess import Preprocess, _Then


def averaged_name(name: str, modes: Sequence[str]) -> str:
    """``efficientnet_lite0+averaged(shortest,squash,border)``: what manifests and runs record."""
    return f"{name}+averaged({','.join(modes)})"


def concat_name(names: Sequence[str], normalize: bool, weights: Sequence[float] | None = None) -> str:
    """``concat_l2(efficientnet_lite0,efficientnet_lite2)`` (``concat(...)``: raw features), in member order;
    a member weighted other than 1 carries its weight: ``efficientnet_lite2*0.5``."""
    weights = list(weights) if weights is not None else [1.0] * len(names)
    parts = [n if w == 1 else f"{n}*{w:g}" for n, w in zip(names, weights)]
    return f"{'concat_l2' if normalize else 'concat'}({','.join(parts)})"


Part = Union[Preprocess, "PackedPreprocess"]


@dataclass(frozen=True)
class PackedPreprocess:
    """Several preprocessings of one image, packed into one flat uint8 row (N,) = each part's
    (3, H_i, W_i) flattened, in order. ``combine`` (concat | mean) only labels the record."""

    parts: tuple[Part, ...]
    combine: str

    @property
    def pixel_shape(self) -> tuple[int, ...]:
        return (sum(_numel(p) for p in self.parts),)

    @property
    def resize_size(self) -> int:
        """The largest side any part resizes to (how large an upload must be to lose nothing)."""
        return max(p.resize_size for p in self.parts)

    def split(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(..., N) -> each part's (..., *part.pixel_shape), in order (views: no copy)."""
        lead, out, start = x.shape[:-1], [], 0
        for p in self.parts:
            n = _numel(p)
            out.append(x[..., start:start + n].reshape(*lead, *p.pixel_shape))
            start += n
        return out

    def pil_transform(self) -> Callable[[Any], torch.Tensor]:
        return _Pack([p.pil_transform() for p in self.parts], same_draws=False)

    def pil_train_transform(self, scale: tuple[float, float] = (0.5, 1.0)) -> Callable[[Any], torch.Tensor]:
        """Augmented views (``data.views``): every part draws the same random crop and flip of the
        image (the same random numbers), each at its own size."""
        return _Pack([p.pil_train_transform(scale) for p in self.parts], same_draws=True)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (..., N) -> float32 (..., N): each part's own normalisation of its slice (elementwise,
        so each slice is bit-identical to that part's ``transform``)."""
        lead = pixels.shape[:-1]
        return torch.cat([p.normalize(x).reshape(*lead, -1) for p, x in zip(self.parts, self.split(pixels))], -1)

    def transform(self) -> Callable[[Any], torch.Tensor]:
        return _Then(self.pil_transform(), self.normalize)

    def train_transform(self, scale: tuple[float, float] = (0.5, 1.0)) -> Callable[[Any], torch.Tensor]:
        return _Then(self.pil_train_transform(scale), self.normalize)

    def to_dict(self) -> dict[str, Any]:
        return {"combine": self.combine, "parts": [p.to_dict() for p in self.parts]}


def _numel(p: Part) -> int:
    return math.prod(p.pixel_shape)


class _Pack:
    """PIL image -> (N,) uint8: each part's geometric half, flattened and concatenated. Picklable."""

    def __init__(self, parts: list[Callable], same_draws: bool):
        self.parts, self.same_draws = parts, same_draws

    def __call__(self, img: Any) -> torch.Tensor:
        state = torch.get_rng_state() if self.same_draws else None
        out = []
        for part in self.parts:
            if state is not None:  # each part draws the random numbers the first one drew
                torch.set_rng_state(state)
            out.append(part(img).reshape(-1))
        return torch.cat(out)


def packable(tower: ImageTower, where: str) -> Part:
    """The tower's preprocessing if it can be a part, else an error naming the config key ``where``."""
    pre = tower.preprocess
    if not isinstance(pre, (Preprocess, PackedPreprocess)):
        raise ValueError(f"{where}: the tower {tower.name} keeps its own preprocessing ({type(pre).__name__}); "
                         "the parts of a concatenation or of averaged views must use littune's Preprocess "
                         "(their pixels are packed into one row per image), so it cannot be one")
    return pre


class _Composite(ImageTower):
    """A locked tower over packed pixels; it has no layer groups of its own to unlock."""

    def layer_groups(self) -> list[nn.Module]:
        raise ValueError(f"{self.name} is locked as a whole (locked_blocks does not apply)")


class AveragedViewsTower(_Composite):
    """mean over views v of tower(view_v(image)): (B, N) packed pixels -> (B, D)."""

    def __init__(self, tower: ImageTower, views: Sequence[Preprocess], modes: Sequence[str]):
        super().__init__()
        self.tower = tower
        self.name = averaged_name(tower.name, modes)
        self.embed_dim, self.pooling = tower.embed_dim, tower.pooling
        self.preprocess = PackedPreprocess(tuple(views), "mean")
        self.set_lock("L")

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        # each view alone (the tower's batch as the plain tower would see it), then the mean: (V, B, D) -> (B, D)
        return torch.stack([self.tower.features(x) for x in self.preprocess.split(pixels)]).mean(0)


class ConcatImageTower(_Composite):
    """concat over members m of w_m * [L2-normalised] m(view_m(image)): (B, N) packed pixels -> (B, sum D_m)."""

    def __init__(self, members: Sequence[ImageTower], normalize: bool = True, weights: Sequence[float] | None = None):
        super().__init__()
        self.members = nn.ModuleList(members)  # state names members.0.*, members.1.*: order is in the fingerprint
        self.normalize = normalize
        self.weights = [float(w) for w in weights] if weights is not None else [1.0] * len(members)
        if len(self.weights) != len(members):
            raise ValueError(f"{len(self.weights)} weights for {len(members)} towers")
        self.name = concat_name([m.name for m in members], normalize, self.weights)
        self.embed_dim = sum(m.embed_dim for m in members)
        self.preprocess = PackedPreprocess(tuple(m.preprocess for m in members), "concat")
        self.set_lock("L")

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        out = [m.features(x) for m, x in zip(self.members, self.preprocess.split(pixels))]  # each (B, D_m)
        if self.normalize:
            out = [F.normalize(f, dim=-1) for f in out]
        out = [f if w == 1 else f * w for f, w in zip(out, self.weights)]
        return torch.cat(out, dim=-1)  # (B, D_1 + ... + D_k)
