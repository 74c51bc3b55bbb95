"""Typed configs for the two towers; ``build()`` makes the tower with its lock applied.

The lock is one visible field per tower (``lock: L``), as in big_vision's configs.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, List, Optional

import torch

from .image import ImageTower, create_image_tower
from .preprocess import Preprocess
from .text import TextTower, create_text_tower
from .tuning import LoraOptions, apply_tuning, record_base


LOCKED_RANDOM_INIT_SEED = 0


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

    def build(self) -> ImageTower:
        def make() -> ImageTower:
            return create_image_tower(self.name, pretrained=self.pretrained, checkpoint=self.checkpoint,
                                      lock=self.lock, locked_blocks=self.locked_blocks,
                                      allow_partial=self.allow_partial, pooling=self.pooling, **self.kwargs)

        if self.lock == "L" and not self.pretrained and self.checkpoint is None:
            # A locked random tower (tests, timing, baselines) is never saved with the run: draw its
            # weights from a fixed seed so that loading the run rebuilds them bit for bit.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(LOCKED_RANDOM_INIT_SEED)
                tower = make()
        else:
            tower = make()
        # Part of the preprocessing, so caches made otherwise are refused.
        changes = {k: v for k, v in (("crop_pct", self.crop_pct), ("resize_mode", self.resize_mode),
                                     ("interpolation", self.interpolation)) if v is not None}
        if changes:
            tower.preprocess = self._with_view(tower, changes)
        return tower

    def _with_view(self, tower: ImageTower, changes: dict[str, Any]) -> Preprocess:
        if not isinstance(tower.preprocess, Preprocess):  # e.g. open_clip's own transforms
            keys = ", ".join(f"model.image.{k}={v!r}" for k, v in changes.items())
            raise ValueError(f"{keys}: the tower {tower.name} keeps its own preprocessing "
                             f"({type(tower.preprocess).__name__}), which cannot take it; leave these unset")
        if "crop_pct" in changes:
            changes["crop_pct"] = float(changes["crop_pct"])
        try:
            return replace(tower.preprocess, **changes)
        except ValueError as e:
            raise ValueError(f"{e} (tower {tower.name})") from None


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
        record_base(tower, self.pretrained)  # before any adapter changes the state's layout
        lora = LoraOptions(self.lora_rank, self.lora_alpha, self.lora_dropout, self.lora_targets)
        return apply_tuning(tower, self.tune, lora)
