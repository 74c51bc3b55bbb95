"""Typed experiment configs: dataclasses, YAML files in ``configs/``, dotted CLI overrides.

    cfg = load_config("configs/lit_flickr8k.yaml", ["train.batch_size=1024", "model.text.lock=L"])

OmegaConf checks every key and type against the dataclasses, so a typo or a wrong type fails
with the key named. A YAML file may start from another with ``_base_: other.yaml``.
``evals`` names the evaluations to run during and after training (``littune.evaluate``):

    evals:
      flowers_zs: {kind: zeroshot, images: ../shared/data/flowers/train, templates: flowers, every: 500}
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..model import ModelConfig
from .loader import ConfigError, ConfigWarning, load_structured
from .ranges import check_ranges


@dataclass
class DataConfig:
    train: Optional[str] = None  # source spec: x.csv | x.jsonl | shards/{000..009}.tar | flickr8k:DIR:train
    dev: Optional[str] = None  # source for periodic dev retrieval (e.g. flickr8k:DIR:dev)
    train_cache: Optional[str] = None  # an existing `littune embed` folder; else made under cache_root
    dev_cache: Optional[str] = None
    use_text_cache: bool = True  # both towers locked (and cached): train on the text tower's cached features
    text_cache: Optional[str] = None  # an explicit text cache folder (default: inside the image cache)
    cache_root: Optional[str] = None  # automatic caches go here (default $LITTUNE_CACHE_DIR or ~/.cache/littune)
    use_cache: bool = True  # with a locked image tower: train on cached embeddings (the fast path)
    views: int = 0  # augmented views per image in the cache (0: the plain view only)
    augment: bool = False  # live image path only: random resized crop + flip
    image_col: str = "image"
    caption_col: str = "caption"
    num_workers: int = 1  # image decoding workers (live path and embedding)
    stream: bool = False  # live path, WebDataset shards: stream them (littune/train/stream.py), never all in memory
    stream_buffer: int = 1000  # data.stream: shuffle buffer of encoded samples per DataLoader worker
    embed_batch_size: int = 64
    shuffle_buffer: int = 0  # cached training: >0 shards read together in a shuffled order (past RAM; docs/caches.md)
    engine: str = "auto"  # what runs locked towers into caches: torch | openvino | onnx | auto (towers/engine.py)


# model.{image,text}.cache_precision: what a locked tower's caches are computed in (littune/towers/engine.py).
CACHE_PRECISIONS = {
    "fp32": "float32, every engine within 2.5e-5 of torch",
    "bf16": "bfloat16 (2-4x faster on AMX/AVX512-BF16 CPUs; features move by 0.5-3.5%)",
    "auto": "bf16 where the CPU runs it natively, else fp32",
}

# optim.decay_convention: what optim.weight_decay means (littune/train/optim.py).
DECAY_CONVENTIONS = {
    "adamw": "torch AdamW: each step w -= lr(t) * weight_decay * w, on every matrix (ndim >= 2)",
    "big_vision": "big_vision's optax.make: each step w -= weight_decay * schedule(t) * w, independent of "
                  "the peak lr and lr multipliers, on kernels only (Linear/Conv weights)",
}


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 1e-4  # not applied to norms, biases, the temperature and the bias
    decay_convention: str = "adamw"  # adamw | big_vision: what weight_decay means (DECAY_CONVENTIONS)
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6  # Adam's epsilon (optax's and big_vision's: 1e-8)
    warmup_steps: int = 50
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0  # max global gradient norm (0: off)
    scale_lr_mult: float = 1.0  # learning-rate multiplier of the temperature and the bias
    head_lr_mult: float = 1.0  # learning-rate multiplier of the text/image heads


@dataclass
class AnchorConfig:
    """Class anchors (littune/train/anchors.py): prompts of the locked image tower's own classes (its
    ImageNet-1k classifier) pulled toward that classifier's weight directions, beside the contrastive loss."""
    weight: float = 0.0  # the anchor loss' weight in the total loss (0: off)
    classes: int = 128  # classes drawn per step (of the classifier's 1,000)
    scale: float = 30.0  # the fixed temperature of the anchor logits
    templates: str = "single"  # prompt templates (a built-in set or a file, as evals take them): one prompt a class


@dataclass
class TrainConfig:
    out_dir: str = "runs/lit"
    steps: int = 1000
    batch_size: int = 256
    loss: str = "softmax"  # softmax (CLIP/LiT) | sigmoid (SigLIP)
    local_loss: bool = False  # distributed: local rows against global columns (memory-lean)
    # distributed sigmoid loss: text chunks passed around a ring of processes instead of gathered, so memory
    # grows with the local batch, not the global one (SigLIP Sec. 3.3; littune/losses.py)
    ring_loss: bool = False
    grad_cache_chunk: int = 0  # >0: gradient cache with text chunks of this size (huge batches)
    precision: str = "fp32"  # fp32 | bf16 (autocast) | auto (bf16 where the CPU/GPU runs it natively)
    seed: int = 0
    log_every: int = 10
    eval_every: int = 0  # steps between dev evaluations (0: at the end only)
    ckpt_every: int = 100
    keep_checkpoints: int = 2
    threads: int = 0  # torch threads (0: all cores)
    device: str = "auto"  # auto (this process's GPU if CUDA is available, else cpu) | cpu | cuda[:N]
    progress: bool = True
    # WiSE-FT at the end of training: text tower = (1 - a) pre-trained + a trained (heads kept); null: off.
    # The last checkpoint keeps the trained weights, model.safetensors the mix (littune/towers/tuning.py).
    interpolate_alpha: Optional[float] = None
    mixup: float = 0.0  # latent mixup (FuseMix): Beta(a, a) coefficient per pair, shared by both sides (0: off)
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    init_from: Optional[str] = None  # a run folder to warm-start from (train/warm_start.py)
    init_parts: list[str] = field(default_factory=lambda: ["image_head", "text_head", "logit_scale", "logit_bias"])
    # torchrun: how long a process waits in one collective for the others before the run stops with an
    # error (a dead or hung peer never hangs the run). Longer than rank 0's longest evaluation (the others
    # wait for it at the next step). A peer that dies outright is noticed at once.
    collective_timeout_s: float = 1800.0


@dataclass
class ExperimentConfig:
    name: str = "lit"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # name -> {kind: zeroshot|retrieval|probe, every: N, ...the evaluator's own options}; each
    # evaluator checks its options (littune/evaluate/evaluators.py). data.dev adds one named "dev".
    evals: dict[str, Any] = field(default_factory=dict)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    return load_structured(ExperimentConfig, path, overrides)


def validate(cfg: ExperimentConfig) -> None:
    """Checks that types alone cannot express; each names its key."""
    from ..losses import LOSSES
    from ..towers.preprocess import RESIZE_MODES
    from ..towers.lock import check_lock_mode
    from ..towers.tuning import check_alpha, check_tune

    check_lock_mode(cfg.model.image.lock, "model.image.lock")
    check_choice(cfg.model.image.resize_mode, "model.image.resize_mode", RESIZE_MODES, none_ok=True)
    check_choice(cfg.optim.decay_convention, "optim.decay_convention", DECAY_CONVENTIONS)
    check_lock_mode(cfg.model.text.lock, "model.text.lock")
    t, alpha = cfg.model.text, cfg.train.interpolate_alpha
    try:
        check_tune(t.tune)
        if alpha is not None:
            check_alpha(alpha, "train.interpolate_alpha")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if alpha is not None and (t.lock != "U" or t.name == "scratch" or not t.pretrained):
        raise ConfigError(f"train.interpolate_alpha={alpha} mixes the tuned text tower with its pre-trained weights; "
                          f"model.text (name={t.name}, lock={t.lock}, pretrained={t.pretrained}) has none to mix with "
                          "(needs a pre-trained minilm/hf: tower with lock=U)")
    if cfg.train.loss not in LOSSES:
        raise ConfigError(f"train.loss='{cfg.train.loss}' is not a registered loss (softmax, sigmoid)")
    if cfg.train.ring_loss and cfg.train.loss != "sigmoid":
        raise ConfigError(f"train.ring_loss=true needs train.loss=sigmoid (got '{cfg.train.loss}'): only the sigmoid "
                          "loss splits into independent blocks that can travel a ring; the softmax loss normalises "
                          "each row over every text")
    if cfg.train.precision not in ("fp32", "bf16", "auto"):
        raise ConfigError(f"train.precision='{cfg.train.precision}' must be fp32, bf16 or auto")
    for side, tower in (("image", cfg.model.image), ("text", t)):
        check_choice(tower.cache_precision, f"model.{side}.cache_precision", CACHE_PRECISIONS)
        if tower.cache_precision == "bf16" and tower.lock != "L":  # auto: bf16 where it applies (towers/config.py)
            raise ConfigError(f"model.{side}.cache_precision='{tower.cache_precision}' is how a locked {side} tower "
                              f"fills its caches; model.{side}.lock='{tower.lock}' runs the tower live "
                              "(train.precision sets that)")
    for name, spec in cfg.evals.items():
        if not isinstance(spec, dict) or "kind" not in spec:
            raise ConfigError(f"evals.{name}: needs 'kind' (zeroshot, retrieval or probe) and its options")
    check_ranges(cfg)
    if cfg.model.text.name == "scratch" and cfg.model.text.width % cfg.model.text.heads:
        raise ConfigError(f"model.text.width={cfg.model.text.width} must be a multiple of model.text.heads="
                          f"{cfg.model.text.heads} (each head gets width / heads channels)")
    if cfg.train.mixup and cfg.train.grad_cache_chunk:
        raise ConfigError("train.mixup mixes pairs across the whole batch, which the gradient cache's text "
                          "chunks cannot do: set train.grad_cache_chunk=0 or train.mixup=0")
    w, steps = cfg.optim.warmup_steps, cfg.train.steps
    if w > steps:  # a warning, not an error: short smoke runs with the default warmup are legitimate
        warnings.warn(f"optim.warmup_steps={w} > train.steps={steps}: the learning rate rises for the whole run "
                      f"and peaks at {steps / w:.0%} of optim.lr; set optim.warmup_steps <= train.steps "
                      "for the full schedule", ConfigWarning, stacklevel=2)
    if cfg.data.train is None and cfg.data.train_cache is None:
        raise ConfigError("data.train (a data source) or data.train_cache (an embedding cache) is required")
    check_prefix_config(cfg)
    check_anchor_config(cfg)
    if cfg.model.text.dropout and cfg.model.text.name != "scratch":
        raise ConfigError(f"model.text.dropout applies to the scratch text tower only (model.text.name="
                          f"'{cfg.model.text.name}' keeps its own dropout); set it to 0")


def check_anchor_config(cfg: ExperimentConfig) -> None:
    """What class anchors need from the config (the image tower's classifier is checked once it is built)."""
    a = cfg.train.anchors
    if not a.weight:
        return
    key = f"train.anchors.weight={a.weight}"
    if cfg.model.image.head != "none":
        raise ConfigError(f"{key} aims class prompts at the image tower's classifier directions, which live in its "
                          f"feature space: needs model.image.head=none (got '{cfg.model.image.head}')")
    d = cfg.data
    if cfg.model.text.lock != "L" or cfg.model.image.lock != "L" or not d.use_text_cache or not d.use_cache or d.stream:
        raise ConfigError(f"{key} reads the class prompts' features from a text cache: needs model.image.lock=L, "
                          "model.text.lock=L, data.use_cache=true, data.use_text_cache=true and data.stream=false")
    if cfg.train.grad_cache_chunk:
        raise ConfigError(f"{key} adds a loss the gradient cache's chunks do not carry: set train.grad_cache_chunk=0")


def check_prefix_config(cfg: ExperimentConfig) -> None:
    """What a prefix cache needs from the config (the tower's own limits are checked once it is built)."""
    t, p = cfg.model.text, cfg.model.text.prefix_cache
    if not p.k:  # (its range, config/ranges.py, refuses a negative k)
        return
    key = f"model.text.prefix_cache.k={p.k}"
    if p.dtype not in ("float16", "float32"):
        raise ConfigError(f"model.text.prefix_cache.dtype='{p.dtype}' is not one of float16, float32")
    if t.lock != "U" or t.name == "scratch" or not t.pretrained:
        raise ConfigError(f"{key} caches the locked bottom of a pre-trained text tower: needs model.text.lock=U "
                          f"and a pre-trained minilm or hf: tower (got lock={t.lock}, name={t.name}, "
                          f"pretrained={t.pretrained})")
    if p.k != t.locked_blocks:
        raise ConfigError(f"{key} must equal model.text.locked_blocks={t.locked_blocks}: the cache holds the "
                          "output of the locked groups (set both)")
    if cfg.model.image.lock != "L" or not cfg.data.use_cache or cfg.data.stream:
        raise ConfigError(f"{key} is read beside the image embedding cache, in its captions' order: needs "
                          "model.image.lock=L, data.use_cache=true and data.stream=false")


def check_choice(value: Any, key: str, choices: dict[str, str], none_ok: bool = False) -> None:
    """Refuse a name that is not one of ``choices`` (name -> what it means), naming the key."""
    if (value is None and none_ok) or value in choices:
        return
    raise ConfigError(f"{key}='{value}' is not one of: " + "; ".join(f"{k} ({v})" for k, v in choices.items()))

