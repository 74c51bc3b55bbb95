"""Typed configs for the two towers; ``build()`` makes the tower with its lock applied.

The lock is one visible field per tower (``lock: L``), as in big_vision's configs.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, List, Optional

import torch

from .composite import AveragedViewsTower, ConcatImageTower, averaged_name, concat_name, packable
from .engine import resolve_cache_precision
from .image import ImageTower, create_image_tower, pooled_name
from .preprocess import RESIZE_MODES, Preprocess
from .text import TextTower, create_text_tower
from .tuning import LoraOptions, apply_tuning, record_base


LOCKED_RANDOM_INIT_SEED = 0


@dataclass
class ImageMemberConfig:
    """A further tower of a concatenation (``model.image.concat``): its own weights and view of the image.

    Lock and ``pretrained`` are the concatenation's (``model.image``); a view key left unset takes
    ``model.image``'s value, and where that is unset too, the tower's own.
    """
    name: str = "efficientnet_lite0"  # registry name, as model.image.name
    checkpoint: Optional[str] = None  # local weights file instead of the source's own weights
    allow_partial: bool = False  # accept a checkpoint that only partly fits
    pooling: str = "default"  # as model.image.pooling
    kwargs: dict[str, Any] = field(default_factory=dict)  # passed to the source (e.g. timm img_size)
    crop_pct: Optional[float] = None  # None: model.image.crop_pct (else the tower's own)
    resize_mode: Optional[str] = None  # shortest | squash | border; None: model.image.resize_mode (else the tower's own)
    interpolation: Optional[str] = None  # None: model.image.interpolation (else the tower's own)
    # Scales this member's (L2-normalised) features against model.image's, which count 1: its share of
    # the text side's cosine, w^2 / (1 + w^2) of the squared norm. Part of the tower's name (the caches' identity).
    weight: float = 1.0


@dataclass
class ImageTowerConfig:
    name: str = "efficientnet_lite0"  # registry name: efficientnet_lite0/1/2, timm:<model>, hf:<name-or-path>
    lock: str = "L"  # L locked pre-trained | U unlocked pre-trained | u unlocked random init
    locked_blocks: int = 0  # with U/u: lock the lowest N layer groups (middle ground between L and U)
    lr_mult: float = 1.0  # learning-rate multiplier for this tower's trainable parameters
    pretrained: bool = True  # False: random init even for L/U (tests, timing)
    checkpoint: Optional[str] = None  # local weights file instead of the source's own weights
    allow_partial: bool = False  # accept a checkpoint that only partly fits (lists what is missing)
    pooling: str = "default"  # default (the model's own) | cls_mean: ViTs, concat(class token, mean patch) (dino.txt)
    head: str = "none"  # none (paper's best) | linear | mlp: a trainable head on the image features
    head_hidden: int = 0  # mlp width (0: halfway between the tower's width and embed_dim, open_clip's)
    head_depth: int = 2  # mlp: linear layers (2 = one hidden layer)
    head_bias: bool = True
    head_dropout: float = 0.0  # mlp: dropout after each hidden layer
    kwargs: dict[str, Any] = field(default_factory=dict)  # passed to the source (e.g. timm img_size)
    crop_pct: Optional[float] = None  # replace the tower's centre-crop fraction (1.0: the whole image, open_clip's)
    # Replace the tower's own view (towers/preprocess.py): shortest | squash | border; squash + bilinear +
    # crop_pct 1.0 is big_vision's resize(224) (LiT's view). None: the tower's authors' own.
    resize_mode: Optional[str] = None
    interpolation: Optional[str] = None  # nearest | bilinear | bicubic | lanczos (None: the tower's own)
    # Several fixed views of each image averaged into one feature (towers/composite.py), e.g. [shortest, squash,
    # border]: resize modes, each with crop_pct/interpolation above; the cache stores the mean of the tower's
    # features over them. Needs lock L; excludes resize_mode. Not data.views (augmented crops as extra rows).
    averaged_views: List[str] = field(default_factory=list)
    # Further locked towers whose features are appended after this one's, in order (towers/composite.py):
    # each sees the same decoded image through its own preprocessing; embed_dim is the sum. Needs lock L.
    concat: List[ImageMemberConfig] = field(default_factory=list)
    concat_normalize: bool = True  # L2-normalise each member's features before concatenating (equal weight each)
    # bf16 embeds ~1.9x faster (Lite0 + Lite2 on an AMX CPU) and moves each feature by ~3.5%; measured, a
    # model trained on either does the same (docs/studies.md). In the cache's identity (towers/engine.py)
    cache_precision: str = "fp32"  # fp32 | bf16 | auto (bf16 where native): what its caches compute in

    def members(self) -> list[ImageMemberConfig]:
        """This tower, then ``concat``'s, each with its view keys resolved against this one's."""
        own = ImageMemberConfig(self.name, self.checkpoint, self.allow_partial, self.pooling, self.kwargs,
                                self.crop_pct, self.resize_mode, self.interpolation)
        return [own] + [replace(m, crop_pct=_first(m.crop_pct, self.crop_pct),
                                resize_mode=_first(m.resize_mode, self.resize_mode),
                                interpolation=_first(m.interpolation, self.interpolation)) for m in self.concat]

    def tower_name(self) -> str:
        """The name ``build()`` gives the tower (what caches and runs record), without building it."""
        names = [pooled_name(m.name, m.pooling) for m in self.members()]
        if len(self.averaged_views) > 1:
            names = [averaged_name(n, self.averaged_views) for n in names]
        return concat_name(names, self.concat_normalize, self.concat_weights()) if self.concat else names[0]

    def concat_weights(self) -> list[float]:
        """Each member's weight in the concatenation: 1 for this tower, then ``concat``'s own."""
        return [1.0] + [float(m.weight) for m in self.concat]

    def build(self) -> ImageTower:
        self._check_composite()
        members = self.members()
        if self.lock == "L" and not self.pretrained and any(m.checkpoint is None for m in members):
            # A locked random tower (tests, timing, baselines) is never saved with the run: draw its
            # weights from a fixed seed so that loading the run rebuilds them bit for bit.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(LOCKED_RANDOM_INIT_SEED)
                towers = [self._build_member(m, i) for i, m in enumerate(members)]
        else:
            towers = [self._build_member(m, i) for i, m in enumerate(members)]
        if self.concat:
            for i, t in enumerate(towers):
                packable(t, self._key(i, "name") + f"={members[i].name!r}")
        tower = (ConcatImageTower(towers, normalize=self.concat_normalize, weights=self.concat_weights())
                 if self.concat else towers[0])
        tower.cache_precision = resolve_cache_precision(self.cache_precision, self.lock)
        return tower

    def _key(self, i: int, key: str) -> str:
        return f"model.image.{key}" if i == 0 else f"model.image.concat[{i - 1}].{key}"

    def _build_member(self, m: ImageMemberConfig, i: int) -> ImageTower:
        tower = create_image_tower(m.name, pretrained=self.pretrained, checkpoint=m.checkpoint, lock=self.lock,
                                   locked_blocks=self.locked_blocks, allow_partial=m.allow_partial,
                                   pooling=m.pooling, **m.kwargs)
        # Part of the preprocessing, so caches made otherwise are refused.
        changes = {k: v for k, v in (("crop_pct", m.crop_pct), ("resize_mode", m.resize_mode),
                                     ("interpolation", m.interpolation)) if v is not None}
        if changes:
            tower.preprocess = self._with_view(tower, changes, i)
        views = self.averaged_views
        if len(views) == 1:  # one view "averaged" is that view: the plain tower, and the plain tower's cache
            tower.preprocess = self._with_view(tower, {"resize_mode": views[0]}, i, "averaged_views")
        elif views:
            pre = packable(tower, f"model.image.averaged_views with {self._key(i, 'name')}={m.name!r}")
            tower = AveragedViewsTower(tower, [replace(pre, resize_mode=v) for v in views], views)
        return tower

    def _with_view(self, tower: ImageTower, changes: dict[str, Any], i: int = 0, key: str = "") -> Preprocess:
        if not isinstance(tower.preprocess, Preprocess):  # e.g. open_clip's own transforms
            keys = ", ".join(f"model.image.{key}" if key else f"{self._key(i, k)}={v!r}" for k, v in changes.items())
            raise ValueError(f"{keys}: the tower {tower.name} keeps its own preprocessing "
                             f"({type(tower.preprocess).__name__}), which cannot take it; leave these unset")
        if "crop_pct" in changes:
            changes["crop_pct"] = float(changes["crop_pct"])
        try:
            return replace(tower.preprocess, **changes)
        except ValueError as e:
            raise ValueError(f"{e} (tower {tower.name}, {self._key(i, 'name')})") from None

    def _check_composite(self) -> None:
        """What a concatenation or averaged views need before anything is built; each error names its key."""
        for key, used in (("concat", bool(self.concat)), ("averaged_views", bool(self.averaged_views))):
            if used and self.lock != "L":
                raise ValueError(f"model.image.{key} makes one locked tower whose features are cached; it needs "
                                 f"model.image.lock=L (got '{self.lock}')")
        for j, m in enumerate(self.concat):
            if isinstance(m.weight, bool) or not isinstance(m.weight, (int, float)) or not 0 < m.weight <= 100:
                raise ValueError(f"model.image.concat[{j}].weight={m.weight!r} must be a number in (0, 100]: "
                                 "it scales that tower's features against model.image's (1)")
        views = self.averaged_views
        for j, v in enumerate(views):
            if v not in RESIZE_MODES:
                raise ValueError(f"model.image.averaged_views[{j}]='{v}' is not a resize mode; use "
                                 + ", ".join(f"'{k}' ({d})" for k, d in RESIZE_MODES.items()))
        if len(set(views)) != len(views):
            raise ValueError(f"model.image.averaged_views={list(views)} names a view twice (it would count double)")
        if views and self.resize_mode is not None:
            raise ValueError(f"model.image.resize_mode='{self.resize_mode}' and model.image.averaged_views="
                             f"{list(views)} both set the view; set one (averaged_views lists resize modes)")
        for j, m in enumerate(self.concat):
            if views and m.resize_mode is not None:
                raise ValueError(f"model.image.concat[{j}].resize_mode='{m.resize_mode}' with model.image."
                                 "averaged_views: every member is averaged over those views; leave it unset")


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


@dataclass
class PrefixCacheConfig:
    """The prefix cache (cache/prefix.py): the locked bottom of a pre-trained text tower run once per caption."""
    k: int = 0  # cache the token states after this many locked groups (= model.text.locked_blocks); 0: off
    dtype: str = "float16"  # float16 | float32 (a step then equals the live one, bitwise at equal padding; 2x disk)
    folder: Optional[str] = None  # an explicit cache folder (default: inside the image cache, prefix/)


@dataclass
class TextTowerConfig:
    name: str = "minilm"  # scratch | minilm | hf:<name-or-path>
    lock: str = "U"
    locked_blocks: int = 0
    lr_mult: float = 1.0
    pretrained: bool = True
    pooling: str = "mean"  # first | last | mean | max | attention (scratch only)
    context_length: int = 32
    # default: the tokenizer's own special tokens | bert_tokenize: big_vision's [CLS] + up to
    # context_length - 1 word pieces, no [SEP] (pre-trained BERT-family towers; towers/text_hf.py)
    tokenize: str = "default"
    # bf16 encodes 2-4x faster (MPNet 84 -> 324 captions/s on an AMX CPU) and moves each feature by ~0.5%;
    # the cache's identity holds it, so fp32 and bf16 caches never mix (towers/engine.py)
    cache_precision: str = "fp32"  # fp32 | bf16 | auto (bf16 where native): what its text caches compute in
    head: str = "linear"  # linear | mlp | none: maps the text features into the shared space
    head_hidden: int = 0  # mlp width (0: halfway between the tower's width and embed_dim, open_clip's)
    head_depth: int = 2  # mlp: linear layers (2 = one hidden layer)
    head_bias: bool = True  # false: open_clip's bias-free projections (needed by --format open_clip)
    head_dropout: float = 0.0  # mlp: dropout after each hidden layer
    # What trains in the unlocked groups of a pre-trained tower (minilm, hf:); the head always trains
    # and lock=L stays "head only". full: every parameter | lora: LoRA adapters, pre-trained weights
    # frozen | norms: LayerNorm weights and biases only (LilT/BitFit). See towers/tuning.py.
    tune: str = "full"
    lora_rank: int = 8
    lora_alpha: float = 16.0  # adapters add (lora_alpha / lora_rank) B A x
    lora_dropout: float = 0.0
    lora_targets: Optional[List[str]] = None  # module-name suffixes; None: query, key, value,
    # attention.output.dense, intermediate.dense, output.dense for BERT-family towers (tuning.py has T5's)
    # Lu / LU at a cached cost: train the top layers from cached states of the locked bottom (docs/prefix_cache.md)
    prefix_cache: PrefixCacheConfig = field(default_factory=PrefixCacheConfig)
    # scratch only:
    tokenizer: str = "minilm"  # minilm (packaged vocabulary) | train (on the captions) | path to tokenizer.json
    vocab_size: int = 8192  # when tokenizer=train
    width: int = 256
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0  # encoder dropout while training (attention weights, residual branches)

    def build(self, tokenizer: Any = None) -> TextTower:
        kw: dict[str, Any] = dict(pooling=self.pooling, context_length=self.context_length)
        if self.tokenize != "default":
            if self.name == "scratch":
                raise ValueError(f"model.text.tokenize='{self.tokenize}' applies to pre-trained towers (minilm, "
                                 "hf:); the scratch tower has its own tokenizer (model.text.tokenizer)")
            kw["tokenize"] = self.tokenize
        if self.name == "scratch":
            kw.update(tokenizer=tokenizer or self.tokenizer, width=self.width, depth=self.depth,
                      heads=self.heads, mlp_ratio=self.mlp_ratio, dropout=self.dropout)
        tower = create_text_tower(self.name, pretrained=self.pretrained, lock=self.lock,
                                  locked_blocks=self.locked_blocks, **kw)
        tower.cache_precision = resolve_cache_precision(self.cache_precision, self.lock)
        record_base(tower, self.pretrained)  # before any adapter changes the state's layout
        lora = LoraOptions(self.lora_rank, self.lora_alpha, self.lora_dropout, self.lora_targets)
        return apply_tuning(tower, self.tune, lora)
