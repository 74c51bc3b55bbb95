"""Image preprocessing taken from each model's own config (never hard-coded per call site).

One dataclass describes what a tower expects (size, crop, view, mean/std, interpolation); the same
object builds the eval transform and the augmented training transform (random resized crop + flip)
used by ``littune embed --views``. It is also written into the cache manifest, so a cache made with
another view of the images is refused.

The view (``resize_mode``), as each tower's authors define it, with ``resize_size`` =
floor(input_size / crop_pct) as timm computes it (``timm/data/transforms_factory.py``):

- ``shortest``: the shorter side to ``resize_size``, aspect kept, centre crop ``input_size``
  (timm's default ``center``; CLIP, DINOv2 and ConvNeXt < 384 px processors);
- ``squash``: both sides to ``resize_size``, aspect lost, centre crop (timm's ``squash``; the
  transformers processors with ``size={height, width}``: ViT, SigLIP, BEiT, ConvNeXt >= 384 px;
  big_vision's ``resize(224)`` at crop 1.0);
- ``border``: the longer side to ``resize_size``, the rest padded with the mean colour, centre crop
  (timm's ``border``).

``backend`` says whose pixels: ``pil`` resizes the PIL image (timm, open_clip, torchvision on
images) and centre-crops at rounded offsets; ``transformers`` resizes the uint8 tensor with
torchvision.transforms.v2's antialiased kernels and crops at floored offsets, as transformers 5's
image processors do (PIL, v1 and v2 tensor resizing differ by up to one grey level).

Each transform comes in two halves: the geometric part on the PIL image, ending in 8-bit pixels
(``pil_transform``: cheap to run in decode workers and 4x smaller to pass between processes), and
``normalize`` on a whole batch. Together they equal ``transform()`` bit for bit.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from torchvision import transforms as T
from torchvision.transforms import functional as F
from torchvision.transforms.v2 import functional as F2

_INTERP = {
    "nearest": T.InterpolationMode.NEAREST,
    "bilinear": T.InterpolationMode.BILINEAR,
    "bicubic": T.InterpolationMode.BICUBIC,
    "lanczos": T.InterpolationMode.LANCZOS,
}
# PIL's resample codes, as found in Hugging Face image processor configs.
_PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "bilinear", 5: "bicubic"}
RESIZE_MODES = {
    "shortest": "shorter side to floor(input_size / crop_pct), aspect kept, centre crop (timm's default)",
    "squash": "both sides to floor(input_size / crop_pct), aspect lost, centre crop (big_vision's resize)",
    "border": "longer side to floor(input_size / crop_pct), padded with the mean colour, centre crop",
}
BACKENDS = ("pil", "transformers")
# timm's crop_mode names -> ours ('center' is timm's default, also when the config has none).
_TIMM_MODES = {None: "shortest", "center": "shortest", "squash": "squash", "border": "border"}


@dataclass(frozen=True)
class Preprocess:
    input_size: int = 224  # side of the square crop fed to the model
    crop_pct: float = 1.0  # resize shorter side to input_size / crop_pct, then centre-crop
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    resize_mode: str = "shortest"  # one of RESIZE_MODES: the view of the image the tower was trained on
    backend: str = "pil"  # pil (timm, open_clip) | transformers (its image processors' tensor resize)

    def __post_init__(self) -> None:
        if self.interpolation not in _INTERP:
            raise ValueError(f"model.image.interpolation='{self.interpolation}' is not one of {sorted(_INTERP)}")
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"model.image.resize_mode='{self.resize_mode}' is not a resize mode; use one of "
                             + ", ".join(f"'{k}' ({v})" for k, v in RESIZE_MODES.items()))
        if self.backend not in BACKENDS:
            raise ValueError(f"preprocess backend '{self.backend}' not in {BACKENDS}")

    @property
    def resize_size(self) -> int:
        """timm's ``math.floor(img_size / crop_pct)`` (rounding gives 249 where timm gives 248 at 0.9)."""
        return math.floor(self.input_size / self.crop_pct)

    @property
    def pixel_shape(self) -> tuple[int, int, int]:
        """What ``pil_transform`` gives per image: (3, input_size, input_size)."""
        return (3, self.input_size, self.input_size)

    def pil_transform(self) -> Callable[[Any], torch.Tensor]:
        """PIL RGB image -> uint8 tensor (3, input_size, input_size): the view of ``resize_mode``."""
        fill = tuple(round(255 * m) for m in self.mean)  # timm's border colour: the mean, in 8 bits
        return _View(self.resize_mode, self.resize_size, self.input_size, self.interpolation, self.backend, fill)

    def pil_train_transform(self, scale: tuple[float, float] = (0.5, 1.0)) -> Callable[[Any], torch.Tensor]:
        """Augmented view as uint8 (3, input_size, input_size): random resized crop and horizontal flip."""
        return T.Compose([
            T.RandomResizedCrop(self.input_size, scale=scale, interpolation=_INTERP[self.interpolation]),
            T.RandomHorizontalFlip(),
            T.PILToTensor(),
        ])

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (..., 3, H, W) -> float32 ``(x / 255 - mean) / std``, the same arithmetic as
        torchvision's ToTensor + Normalize (so the result is bit-identical)."""
        x = pixels.to(torch.float32).div(255)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)
        return x.sub_(mean).div_(std)

    def transform(self) -> Callable[[Any], torch.Tensor]:
        """PIL RGB image -> float tensor (3, input_size, input_size), the deterministic eval path."""
        return _Then(self.pil_transform(), self.normalize)

    def train_transform(self, scale: tuple[float, float] = (0.5, 1.0)) -> Callable[[Any], torch.Tensor]:
        """Augmented view: random resized crop and horizontal flip (for cached augmented views)."""
        return _Then(self.pil_train_transform(scale), self.normalize)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocess":
        """From ``to_dict``; a dict from before the view was recorded (no ``resize_mode``) is refused."""
        if "resize_mode" not in d:
            raise ValueError(f"preprocessing {d} does not say how the image was resized (no 'resize_mode'): "
                             "it was recorded by an older littune; embed or export again")
        return cls(**{**d, "mean": tuple(d["mean"]), "std": tuple(d["std"])})

    @classmethod
    def from_timm(cls, model: torch.nn.Module) -> "Preprocess":
        """timm's eval transform for ``model``: ``create_transform(**resolve_data_config(model=model))``."""
        from timm.data import resolve_data_config

        cfg = resolve_data_config({}, model=model)
        mode = cfg.get("crop_mode")
        if mode not in _TIMM_MODES:
            raise ValueError(f"timm crop_mode '{mode}' of {type(model).__name__} is not one littune "
                             f"reproduces ({sorted(k for k in _TIMM_MODES if k)})")
        return cls(
            input_size=int(cfg["input_size"][-1]),
            crop_pct=float(cfg.get("crop_pct") or 0.875),  # timm's DEFAULT_CROP_PCT when the config has none
            interpolation=str(cfg.get("interpolation") or "bilinear"),  # timm's default
            mean=tuple(float(x) for x in cfg["mean"]),
            std=tuple(float(x) for x in cfg["std"]),
            resize_mode=_TIMM_MODES[mode],
        )

    @classmethod
    def from_hf(cls, processor: Any, default_size: int = 224) -> "Preprocess":
        """The transformers image processor's own view (ViT, DINOv2, CLIP, SigLIP, BEiT, ResNet, ConvNeXt).

        ``size={height, width}`` squashes the whole image (then crops if ``do_center_crop``);
        ``size={shortest_edge}`` keeps the aspect and centre-crops; ConvNeXt's processor resizes to
        ``shortest_edge / crop_pct`` and crops below 384 px and squashes from 384 px.
        """
        size = _as_dict(getattr(processor, "size", None))
        crop = _as_dict(getattr(processor, "crop_size", None))
        do_crop = bool(getattr(processor, "do_center_crop", False)) and bool(crop)
        crop_pct = None
        if size.get("height"):
            mode, resize = "squash", int(size["height"])
        elif size.get("shortest_edge"):
            mode, resize = "shortest", int(size["shortest_edge"])
            crop_pct = getattr(processor, "crop_pct", None)  # ConvNeXt (and ResNet, which uses its processor)
            if crop_pct and resize >= 384:
                mode, crop_pct = "squash", None  # ConvNeXt from 384 px: the whole image, no crop
            elif crop_pct:
                do_crop = False
        else:
            mode, resize = "shortest", default_size
        if crop_pct:  # ConvNeXt: int(shortest_edge / crop_pct), the same float division as resize_size
            input_size, pct = resize, float(crop_pct)
        else:
            input_size = int(crop.get("height") or crop.get("shortest_edge")) if do_crop else resize
            pct = _crop_pct(input_size, resize)
        resample = getattr(processor, "resample", 3)
        interp = _PIL_RESAMPLE.get(int(resample), "bicubic") if resample is not None else "bicubic"
        mean = tuple(float(x) for x in (getattr(processor, "image_mean", None) or (0.5, 0.5, 0.5)))
        std = tuple(float(x) for x in (getattr(processor, "image_std", None) or (0.5, 0.5, 0.5)))
        backend = "pil" if any(c.__name__ == "PilBackend" for c in type(processor).__mro__) else "transformers"
        return cls(input_size=input_size, crop_pct=pct, interpolation=interp, mean=mean, std=std,
                   resize_mode=mode, backend=backend)


def _as_dict(size: Any) -> dict[str, Any]:
    """A processor's size: a dict (transformers 4) or a SizeDict (5) -> a plain dict of the set keys."""
    if not size:
        return {}
    items = size.items() if hasattr(size, "items") else vars(size).items()
    return {k: v for k, v in items if v is not None}


def _crop_pct(input_size: int, resize: int) -> float:
    """The largest crop_pct with floor(input_size / crop_pct) == resize (a float division may land
    just under the integer)."""
    if resize <= input_size:
        return 1.0
    pct = input_size / resize
    while math.floor(input_size / pct) < resize:
        pct = math.nextafter(pct, 0.0)
    return pct


class _View:
    """The geometric half: PIL RGB image -> uint8 tensor (3, size, size). Picklable for workers.

    ``resize_size`` is the side that ``mode`` resizes: the shorter side (shortest), both (squash)
    or the longer side (border); then a centre crop (padded with ``fill`` where the image is smaller).
    """

    def __init__(self, mode: str, resize_size: int, size: int, interpolation: str, backend: str,
                 fill: tuple[int, ...]):
        self.mode, self.resize_size, self.size = mode, resize_size, size
        self.interp, self.backend, self.fill = _INTERP[interpolation], backend, list(fill)

    def __call__(self, img: Any) -> torch.Tensor:
        w, h = img.size
        s = self.resize_size
        if self.mode == "squash":
            hw: list[int] = [s, s]
        elif self.mode == "border":  # timm's ResizeKeepRatio(longest=1): both sides / (longer side / s)
            ratio = max(h / s, w / s)
            hw = [round(h / ratio), round(w / ratio)]
        else:  # shortest: torchvision's int size, the longer side int(s * long / short)
            hw = [s]
        if self.backend == "transformers":  # the uint8 tensor, antialiased, with transforms.v2 as the processors
            x = F2.resize(F.pil_to_tensor(img), hw, interpolation=self.interp, antialias=True)  # (v1 rounds otherwise)
        else:
            x = F.pil_to_tensor(F.resize(img, hw, interpolation=self.interp))
        return self._crop(x)  # (3, size, size) uint8

    def _crop(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        c = self.size
        if c > h or c > w:  # pad to at least c x c, the extra pixel right/bottom (timm, torchvision)
            pw, ph = max(c - w, 0), max(c - h, 0)
            fill = self.fill if self.mode == "border" else 0
            x = _pad(x, [pw // 2, ph // 2, (pw + 1) // 2, (ph + 1) // 2], fill)
            h, w = x.shape[-2:]
        if self.backend == "transformers":  # transformers' center_crop floors the offsets
            top, left = int((h - c) / 2.0), int((w - c) / 2.0)
        else:  # torchvision's (and so timm's) rounds them
            top, left = int(round((h - c) / 2.0)), int(round((w - c) / 2.0))
        return x[:, top:top + c, left:left + c].contiguous()


def _pad(x: torch.Tensor, ltrb: list[int], fill: list[int] | int) -> torch.Tensor:
    """Pad (3, H, W) uint8 with a per-channel colour."""
    fills = fill if isinstance(fill, list) else [fill] * x.shape[0]
    left, top, right, bottom = ltrb
    out = torch.empty((x.shape[0], x.shape[1] + top + bottom, x.shape[2] + left + right), dtype=x.dtype)
    for ch, v in enumerate(fills):
        out[ch].fill_(v)
    out[:, top:top + x.shape[1], left:left + x.shape[2]] = x
    return out


class _Then:
    """``second(first(x))``, picklable (DataLoader workers may be spawned, not forked)."""

    def __init__(self, first: Callable, second: Callable):
        self.first, self.second = first, second

    def __call__(self, x: Any) -> torch.Tensor:
        return self.second(self.first(x))
