"""A trained LiT model for users: embed images and texts, zero-shot classify, build and search an index.

    lit = littune.load("runs/demo/latest")          # a run directory or a `littune export` folder
    lit.classify("photo.jpg", ["cat", "dog", "car"])  # [{'dog': 0.91, 'cat': 0.07, 'car': 0.02}]
    index = lit.build_index("photos/", "photos.index")
    index.search("a dog catching a frisbee", k=10)

Classification is CLIP's zero-shot protocol (arXiv 2103.00020 Sec. 3.1.4, used by LiT arXiv
2111.07991): each label is written into every prompt template, the prompt embeddings of a label are
averaged (``evaluate.zeroshot.build_classifier``), and the probabilities are those the model was
trained to give (``probability_kind``): for the softmax loss (CLIP, LiT) a softmax over the labels of
the learned temperature times the cosine similarities; for the sigmoid loss (SigLIP, arXiv
2303.15343) each label's own ``sigmoid(t * cos + b)`` with the learned bias, independent of the
other labels (they need not sum to 1), as open_clip computes them on the export. A label may give several
names separated by ';' (``"rose;garden rose"``): its prompts are averaged over every name, as a
classnames file's aliases are; results keep the label as typed.

Every method takes one lock, so one ``LiT`` object can serve many threads (the web app does).
"""
from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Sequence, Union

import torch
from PIL import Image

from ..data.images import DEFAULT_MAX_PIXELS, BadImage, BadInputLog, load_image
from ..encode import encode_features, encode_texts
from ..evaluate.classnames import split_aliases
from ..evaluate.templates import get_templates
from ..evaluate.zeroshot import build_classifier, token_rows, validate_templates
from ..model import LiTModel
from ..config import ExperimentConfig
from .index import ImageIndex, IndexOptions, build_index, read_meta

ImageInput = Union[str, Path, bytes, Image.Image]
DEFAULT_TEMPLATES = "simple"  # littune/resources/templates/simple.txt: eight general prompts


class BadImageWarning(UserWarning):
    """An image ``classify`` skipped because it cannot be read (no ``bad`` log was given)."""


def _as_list(images) -> list:
    return [images] if isinstance(images, (str, Path, bytes, bytearray, Image.Image)) else list(images)


def parse_labels(labels: str | Sequence[str]) -> list[str]:
    """A list of labels, or one comma-separated string ("cat, dog, car"); blanks are refused, and so
    are empty names in a label's ';'-separated aliases ("rose;;garden rose")."""
    items = labels.split(",") if isinstance(labels, str) else list(labels)
    out = [str(x).strip() for x in items]
    if not out or any(not x for x in out):
        raise ValueError(f"labels: need one or more non-empty labels separated by commas, got {labels!r}")
    for label in out:
        split_aliases(label, "labels")
    return out


class LiT:
    """A loaded model: ``embed_images``, ``embed_texts``, ``classify``, ``build_index`` / ``open_index``."""

    def __init__(self, model: LiTModel, cfg: ExperimentConfig, source: str | Path | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, classifier_cache: int = 32):
        self.model = model.eval()
        self.cfg = cfg
        self.source = str(source) if source is not None else None
        self.max_pixels = max_pixels
        self._transform = model.image.preprocess.transform()
        self._lock = threading.RLock()
        self._classifiers: OrderedDict[tuple, torch.Tensor] = OrderedDict()  # LRU of label sets
        self._classifier_cache = classifier_cache

    # ---- properties -----------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.model.logit_scale.device

    @property
    def embed_dim(self) -> int:
        return self.model.embed_dim

    @property
    def temperature(self) -> float:
        return self.model.temperature

    @property
    def probability_kind(self) -> str:
        """``softmax`` (over the labels) or ``sigmoid`` (per label, with the bias): as the model was trained."""
        return "sigmoid" if self.cfg.train.loss == "sigmoid" else "softmax"

    def __repr__(self) -> str:
        return (f"LiT(image={self.model.image.name}, text={self.model.text.name}, embed_dim={self.embed_dim}, "
                f"source={self.source!r})")

    # ---- images ---------------------------------------------------------------------------------
    def decode(self, image: ImageInput, name: str | None = None) -> Image.Image:
        """A path, encoded bytes or a PIL image -> RGB PIL image; ``BadImage`` names what is wrong."""
        if isinstance(image, Image.Image):
            return image if image.mode == "RGB" else image.convert("RGB")
        return load_image(image, max_pixels=self.max_pixels, name=name)

    def pixels(self, images: ImageInput | Sequence[ImageInput]) -> torch.Tensor:
        """Decoded and preprocessed exactly as the cache and training saw them: (N, 3, H, W)."""
        return torch.stack([self._transform(self.decode(im)) for im in _as_list(images)])

    @torch.no_grad()
    def embed_images(self, images: ImageInput | Sequence[ImageInput], batch_size: int = 32) -> torch.Tensor:
        """(N,) paths / bytes / PIL images -> (N, E) L2-normalised image embeddings (on the CPU)."""
        images = _as_list(images)
        if not images:
            raise ValueError("images: no images given")
        out = []
        for i in range(0, len(images), batch_size):
            x = self.pixels(images[i:i + batch_size])  # decode outside the lock: other threads may run
            with self._lock:
                out.append(self.model.encode_image(x.to(self.device)).float().cpu())
        return torch.cat(out)

    # ---- texts ----------------------------------------------------------------------------------
    def embed_texts(self, texts: str | Sequence[str]) -> torch.Tensor:
        """(N,) strings -> (N, E) L2-normalised text embeddings (on the CPU)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        with self._lock:
            return encode_texts(self.model, texts).float()

    # ---- zero-shot classification ---------------------------------------------------------------
    def classifier(self, labels: str | Sequence[str], templates: str | Sequence[str] | None = None) -> torch.Tensor:
        """(C, E) prompt-ensembled label embeddings; the last few label sets are kept (a page re-asks)."""
        labels = parse_labels(labels)
        prompts = resolve_templates(templates)
        key = (tuple(labels), tuple(prompts))
        with self._lock:
            if key in self._classifiers:
                self._classifiers.move_to_end(key)
                return self._classifiers[key]
            aliases = [split_aliases(label, "labels") for label in labels]
            # Labels the text tower cannot tell apart ("Cat" and "cat" for an uncased one) are refused.
            weights = build_classifier(lambda t: encode_texts(self.model, t), aliases, prompts,
                                       tokenize=token_rows(self.model.tokenize), labels=labels).cpu()
            self._classifiers[key] = weights
            while len(self._classifiers) > self._classifier_cache:
                self._classifiers.popitem(last=False)
            return weights

    def probabilities(self, images: ImageInput | Sequence[ImageInput], labels: str | Sequence[str],
                      templates: str | Sequence[str] | None = None) -> torch.Tensor:
        """(N, C) probabilities, columns in the order of ``labels``: of ``probability_kind`` (a softmax
        row sums to 1; sigmoid probabilities are each label's own)."""
        return self._probs(self.embed_images(images), self.classifier(labels, templates))

    def _probs(self, emb: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """(N, E) image embeddings, (C, E) classifier -> (N, C) probabilities at the learned temperature."""
        logits = self.model.logit_scale.detach().exp().float().cpu() * emb @ weights.T  # (N, C)
        if self.probability_kind == "sigmoid":
            return torch.sigmoid(logits + self.model.logit_bias.detach().float().cpu())  # SigLIP's per-pair probability
        return logits.softmax(dim=-1)

    def classify(self, images: ImageInput | Sequence[ImageInput], labels: str | Sequence[str],
                 templates: str | Sequence[str] | None = None, bad: BadInputLog | None = None,
                 batch_size: int = 32) -> list[dict[str, float] | None]:
        """One ``{label: probability}`` per image, most probable first; ``None`` for an unreadable one.
        The probabilities are of ``probability_kind`` (softmax or sigmoid, as the model was trained).

        ``labels``: each one name or several separated by ';' ("rose;garden rose").
        ``templates``: None (the built-in "simple" set), a built-in name, a file of lines with
        ``{}``, several of those joined with '+' ("flowers+simple"), or a list of template strings.
        Unreadable images (missing, empty, truncated, not an image, too many pixels) are skipped as
        ``embed``, ``index`` and evaluation skip them: each is recorded in ``bad`` (key: its position
        in ``images``) or, without a log, warned about. When no image can be read, the error is raised
        (``BadImage`` for one image).
        """
        labels = parse_labels(labels)
        images = _as_list(images)
        if not images:
            raise ValueError("images: no images given")
        weights = self.classifier(labels, templates)  # (C, E); bad labels or templates fail first
        out: list[dict[str, float] | None] = [None] * len(images)
        errors: list[tuple[int, BadImage]] = []
        for start in range(0, len(images), batch_size):  # decoded a batch at a time: bounded memory
            decoded = {}
            for i, im in enumerate(images[start:start + batch_size], start):
                try:
                    decoded[i] = self.decode(im, name=None if isinstance(im, (str, Path)) else f"image {i}")
                except BadImage as e:
                    errors.append((i, e))
            if decoded:
                probs = self._probs(self.embed_images(list(decoded.values()), batch_size), weights)
                for i, row in zip(decoded, probs):
                    out[i] = _ranked(labels, row)
        if len(errors) == len(images):
            if len(errors) == 1:
                raise errors[0][1]
            raise ValueError(f"none of the {len(errors)} images could be read: "
                             + "; ".join(str(e) for _, e in errors[:5]) + ("; ..." if len(errors) > 5 else ""))
        for i, e in errors:
            if bad is not None:
                bad.add_error(str(i), e.name, e)
            else:
                warnings.warn(f"{e} (skipped)", BadImageWarning, stacklevel=2)
        return out

    def exclusive(self):
        """The model's lock (re-entrant): hold it to run several steps on the model as one."""
        return self._lock

    @torch.no_grad()
    def embed_image_features(self, features: torch.Tensor) -> torch.Tensor:
        """(N, D_img) image tower features (e.g. from an embedding cache) -> (N, E) embeddings."""
        with self._lock:
            return encode_features(self.model, features).float()

    # ---- the image index ------------------------------------------------------------------------
    def build_index(self, folder: str | Path, out: str | Path, options: IndexOptions | None = None) -> ImageIndex:
        """Embed every image under ``folder`` into a searchable index at ``out`` (resumable)."""
        return build_index(self, folder, out, options)

    def open_index(self, path: str | Path, backend: str | None = None) -> ImageIndex:
        return ImageIndex.open(path, model=self, backend=backend)


def _ranked(labels: list[str], probs: torch.Tensor) -> dict[str, float]:
    """(C,) probabilities -> {label: probability}, most probable first (ties in label order)."""
    return {labels[j]: float(probs[j]) for j in probs.argsort(descending=True, stable=True).tolist()}


def resolve_templates(templates: str | Sequence[str] | None) -> list[str]:
    if templates is None:
        return get_templates(DEFAULT_TEMPLATES)
    if isinstance(templates, (str, Path)):
        return get_templates(templates)
    return validate_templates(templates)


def load(path: str | Path, device: str = "auto") -> LiT:
    """A run directory (``littune train`` / ``littune demo``) or an export folder -> ``LiT``.

    ``device``: auto (this process's GPU when CUDA is available, else the CPU) | cpu | cuda[:N].
    """
    from .. import distributed
    from ..progress import quiet_third_party_bars
    from ..runs import load_run

    p = Path(path)
    if (p / "index.json").is_file():
        raise ValueError(f"{p} is an image index, not a model: open it with littune.load_index({str(p)!r})")
    if str(path).startswith("local-dir:") or (p / "open_clip_config.json").is_file():
        folder = str(path).removeprefix("local-dir:")
        raise ValueError(f"{path} is an open_clip model: `littune eval ... --model local-dir:{folder}` evaluates "
                         "it; littune.load reads littune runs and exports")
    quiet_third_party_bars()  # transformers' per-load progress bar is noise in a CLI answer or a server log
    model, cfg = load_run(p)
    model = model.to(distributed.resolve_device(device))
    return LiT(model, cfg, source=Path(path).resolve())


def load_index(path: str | Path, model: str | Path | LiT | None = None, backend: str | None = None,
               device: str = "auto") -> ImageIndex:
    """Open an index with the model recorded in it (or ``model``, a run, export or ``LiT`` with the same weights);
    ``device`` as in ``load`` (unused when ``model`` is a ``LiT``)."""
    if model is None:
        meta = read_meta(path)
        if not meta.get("model") or not Path(meta["model"]).exists():
            raise FileNotFoundError(f"{path}: the model that made it ({meta.get('model')}) is gone; "
                                    "pass it with --model (it must have the same weights)")
        model = meta["model"]
    lit = model if isinstance(model, LiT) else load(model, device=device)
    return ImageIndex.open(path, model=lit, backend=backend)
