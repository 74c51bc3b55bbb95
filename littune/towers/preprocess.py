"""Image preprocessing taken from each model's own config (never hard-coded per call site).

One dataclass describes what a tower expects (size, crop, mean/std, interpolation); the same
object builds the eval transform (resize + centre crop, timm's convention) and the augmented
training transform (random resized crop + flip) used by ``littune embed --views``.
It is also written into the cache manifest, so a cache made with other preprocessing is refused.

Each transform comes in two halves: the geometric part on the PIL image, ending in 8-bit pixels
(``pil_transform``: cheap to run in decode workers and 4x smaller to pass between processes), and
``normalize`` on a whole batch. Together they equal ``transform()`` bit for bit.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from torchvision import transforms as T

_INTERP = {
    "nearest": T.InterpolationMode.NEAREST,
    "bilinear": T.InterpolationMode.BILINEAR,
    "bicubic": T.InterpolationMode.BICUBIC,
    "lanczos": T.InterpolationMode.LANCZOS,
}
# PIL's resample codes, as found in Hugging Face image processor configs.
_PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "bilinear", 5: "bicubic"}


@dataclass(frozen=True)
class Preprocess:
    input_size: int = 224  # side of the square crop fed to the model
    crop_pct: float = 1.0  # resize shorter side to input_size / crop_pct, then centre-crop
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        if self.interpolation not in _INTERP:
            raise ValueError(f"interpolation '{self.interpolation}' not in {sorted(_INTERP)}")
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}")

    @property
    def resize_size(self) -> int:
        return int(round(self.input_size / self.crop_pct))

    def pil_transform(self) -> Callable[[Any], torch.Tensor]:
        """PIL RGB image -> uint8 tensor (3, input_size, input_size): resize + centre crop."""
        return T.Compose([
            T.Resize(self.resize_size, interpolation=_INTERP[self.interpolation]),
            T.CenterCrop(self.input_size),
            T.PILToTensor(),
        ])

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
        return cls(**{**d, "mean": tuple(d["mean"]), "std": tuple(d["std"])})

    @classmethod
    def from_timm(cls, model: torch.nn.Module) -> "Preprocess":
        from timm.data import resolve_data_config

        cfg = resolve_data_config({}, model=model)
        return cls(
            input_size=int(cfg["input_size"][-1]),
            crop_pct=float(cfg.get("crop_pct") or 1.0),
            interpolation=str(cfg.get("interpolation") or "bicubic"),
            mean=tuple(float(x) for x in cfg["mean"]),
            std=tuple(float(x) for x in cfg["std"]),
        )

    @classmethod
    def from_hf(cls, processor: Any, default_size: int = 224) -> "Preprocess":
        """From a transformers image processor (ViT, DINOv2, CLIP, SigLIP, ResNet, ConvNeXt)."""
        size = getattr(processor, "size", None) or {}
        crop = getattr(processor, "crop_size", None) or {}
        do_crop = bool(getattr(processor, "do_center_crop", False)) and bool(crop)
        if do_crop:
            input_size = int(crop.get("height") or crop.get("shortest_edge"))
            resize = int(size.get("shortest_edge") or size.get("height") or input_size)
        elif "shortest_edge" in size:
            input_size = int(size["shortest_edge"])
            # ConvNeXt resizes to shortest_edge / crop_pct then centre-crops (below 384 px;
            # from 384 px it resizes without a crop). Other processors have no crop_pct (or None).
            crop_pct = getattr(processor, "crop_pct", None)
            resize = int(input_size / crop_pct) if crop_pct and input_size < 384 else input_size
        else:
            input_size = int(size.get("height") or default_size)
            resize = input_size
        resample = getattr(processor, "resample", 3)
        interp = _PIL_RESAMPLE.get(int(resample), "bicubic") if resample is not None else "bicubic"
        mean = tuple(float(x) for x in (getattr(processor, "image_mean", None) or (0.5, 0.5, 0.5)))
        std = tuple(float(x) for x in (getattr(processor, "image_std", None) or (0.5, 0.5, 0.5)))
        return cls(input_size=input_size, crop_pct=min(1.0, input_size / resize),
                   interpolation=interp, mean=mean, std=std)


class _Then:
    """``second(first(x))``, picklable (DataLoader workers may be spawned, not forked)."""

    def __init__(self, first: Callable, second: Callable):
        self.first, self.second = first, second

    def __call__(self, x: Any) -> torch.Tensor:
        return self.second(self.first(x))
