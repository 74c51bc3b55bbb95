"""Which text-tower weights train, and mixing a tuned tower back towards its pre-trained weights.

``model.text.tune`` chooses what trains inside the unlocked layer groups of a pre-trained tower
(``minilm``, ``hf:``); the text head always trains, and ``model.text.lock=L`` stays "head only":

    full    every unlocked parameter (the LiT paper's U setting)
    lora    LoRA (Hu et al. 2021, arXiv 2106.09685) through ``peft``: the pre-trained weights stay
            frozen; rank-r adapters on the attention and MLP projections learn W x + (a/r) B A x
    norms   only the LayerNorm scales and biases (LilT, Khan & Fu 2023, arXiv 2303.11866; the
            BitFit idea of Ben Zaken et al. 2022)

``interpolate`` is WiSE-FT's weight-space ensemble (Wortsman et al. 2022, arXiv 2109.01903; PAINT,
Ilharco et al. 2022): theta(a) = (1 - a) theta_pretrained + a theta_tuned, so a=0 is the pre-trained
tower and a=1 the tuned one; for a LoRA tower the adapters' delta is scaled: W + a (a/r) B A.
A tower built from pre-trained weights keeps the fingerprint of those weights (``base_fingerprint``),
so a mix is refused when the source no longer gives the weights training started from.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from .lock import fingerprint
from .text import TextTower

TUNE_MODES = {
    "full": "every unlocked parameter trains",
    "lora": "LoRA adapters on the attention and MLP projections train; the pre-trained weights stay frozen",
    "norms": "only the LayerNorm weights and biases train (LilT / BitFit)",
}

# Projections LoRA adapts by default, per transformers model_type (suffixes of module names).
BERT_TARGETS = ("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense")
DEFAULT_LORA_TARGETS = {
    **dict.fromkeys(("bert", "roberta", "xlm-roberta", "camembert", "electra"), BERT_TARGETS),
    "distilbert": ("q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"),
    **dict.fromkeys(("t5", "mt5", "umt5"), ("q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo")),
}


@dataclass
class LoraOptions:
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: Optional[Sequence[str]] = None  # None: DEFAULT_LORA_TARGETS for the tower's model_type


def check_tune(mode: str) -> str:
    if mode not in TUNE_MODES:
        raise ValueError(f"model.text.tune='{mode}' is not a tuning mode; use one of "
                         + ", ".join(f"'{k}' ({v})" for k, v in TUNE_MODES.items()))
    return mode


def check_alpha(alpha: float, key: str = "alpha") -> float:
    if not isinstance(alpha, (int, float)) or not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"{key}={alpha!r} must lie in [0, 1] (0: the pre-trained text tower, 1: the trained one)")
    return float(alpha)


def _trainable_modules(tower: TextTower, kind: type | tuple[str, ...]) -> dict[str, nn.Module]:
    """Modules of the tower's network whose weights train after the lock (so not in locked groups,
    not BERT's unused pooler): nn.Linear when ``kind`` is a type, else class names ending in ``kind``."""
    out = {}
    for name, m in tower.model.named_modules():
        w = getattr(m, "weight", None)
        hit = isinstance(m, kind) if isinstance(kind, type) else type(m).__name__.endswith(kind)
        if hit and isinstance(w, nn.Parameter) and w.requires_grad:
            out[name] = m
    return out


def _suffixes(names) -> list[str]:
    """'encoder.layer.3.attention.self.query' -> 'attention.self.query': what lora_targets may name."""
    return sorted({re.sub(r"^.*\.\d+\.", "", n) for n in names})


def _lora_targets(tower: TextTower, opts: LoraOptions) -> list[str]:
    """Full names of the Linear modules LoRA adapts; each name in ``model.text.lora_targets`` must match."""
    linear = _trainable_modules(tower, nn.Linear)
    model_type = getattr(tower.model.config, "model_type", "?")
    given = opts.targets is not None
    targets = list(opts.targets) if given else list(DEFAULT_LORA_TARGETS.get(model_type, ()))
    if not targets:
        raise ValueError(f"model.text.lora_targets: no default LoRA targets for a '{model_type}' tower; "
                         f"name its projections (e.g. {_suffixes(linear)[:8]})")

    def matches(name: str, t: str) -> bool:
        return name == t or name.endswith("." + t)

    missing = [t for t in targets if not any(matches(n, t) for n in linear)]
    if given and missing:
        raise ValueError(f"model.text.lora_targets: {missing} match no trainable Linear module of "
                         f"{tower.name} (locked groups excluded); its projections end in "
                         f"{_suffixes(linear) or 'nothing: every group is locked'}")
    chosen = [n for n in linear if any(matches(n, t) for t in targets)]
    if not chosen:
        raise ValueError(f"model.text.tune=lora: no Linear module of {tower.name} to adapt (model.text.lora_targets="
                         f"{targets}; model.text.locked_blocks={tower.locked_blocks} locks the rest)")
    return chosen


def _add_lora(tower: TextTower, opts: LoraOptions) -> None:
    for key, v, ok in (("lora_rank", opts.rank, opts.rank >= 1), ("lora_alpha", opts.alpha, opts.alpha > 0),
                       ("lora_dropout", opts.dropout, 0 <= opts.dropout < 1)):
        if not ok:
            raise ValueError(f"model.text.{key}={v} is out of range (rank >= 1, alpha > 0, 0 <= dropout < 1)")
    targets = _lora_targets(tower, opts)
    from peft import LoraConfig, inject_adapter_in_model

    # Exact module names: adapters go only where the lock left weights trainable. peft freezes every
    # other parameter of the network, the pre-trained weights of the adapted layers included.
    inject_adapter_in_model(LoraConfig(r=opts.rank, lora_alpha=opts.alpha, lora_dropout=opts.dropout,
                                       target_modules=targets, bias="none"), tower.model)


def _train_norms_only(tower: TextTower) -> None:
    norms = _trainable_modules(tower, ("LayerNorm", "RMSNorm"))  # BERT's LayerNorm, T5LayerNorm, ...
    if not norms:
        raise ValueError(f"model.text.tune=norms: {tower.name} has no trainable LayerNorm "
                         f"(model.text.locked_blocks={tower.locked_blocks})")
    tower.requires_grad_(False)
    for m in norms.values():
        m.requires_grad_(True)


def apply_tuning(tower: TextTower, mode: str, lora: LoraOptions | None = None) -> TextTower:
    """Choose what trains in a built, locked tower (``set_lock`` first); records ``tower.tune``."""
    check_tune(mode)
    if mode != "full":
        if not tower.tunable:
            raise ValueError(f"model.text.tune={mode} keeps a pre-trained tower's weights; the {tower.name} tower "
                             "has none (use minilm or hf:<name>, or model.text.tune=full)")
        if tower.lock_mode != "U":
            raise ValueError(f"model.text.tune={mode} needs model.text.lock=U (pre-trained, unlocked); "
                             f"lock={tower.lock_mode} " + ("trains only the head already" if tower.locked
                                                           else "starts from random weights"))
        if mode == "lora":
            _add_lora(tower, lora or LoraOptions())
        else:
            _train_norms_only(tower)
    tower.tune, tower.lora = mode, (asdict(lora or LoraOptions()) if mode == "lora" else None)
    return tower


def tuning_info(tower: TextTower) -> dict[str, Any]:
    """What model_info.json records: the mode, LoRA's options, the pre-trained weights' fingerprint."""
    return {"tune": tower.tune, "lora": tower.lora, "base_fingerprint": tower.base_fingerprint}


# ---- LoRA adapters as plain weights -----------------------------------------------------------------
def lora_layers(module: nn.Module) -> dict[str, nn.Module]:
    from peft.tuners.lora import LoraLayer

    return {n: m for n, m in module.named_modules() if isinstance(m, LoraLayer)}


def merge_lora(tower: TextTower) -> TextTower:
    """Fold every adapter into its layer (W += (a/r) B A) and put the plain layer back: the tower
    then has the state keys of a ``tune=full`` tower and computes the same features."""
    if tower.tune != "lora":
        return tower
    for name, layer in lora_layers(tower.model).items():
        layer.merge()
        parent, _, child = name.rpartition(".")
        setattr(tower.model.get_submodule(parent) if parent else tower.model, child, layer.get_base_layer())
    tower.tune, tower.lora = "full", None
    return tower


# ---- weight-space interpolation (WiSE-FT) -----------------------------------------------------------
def interpolate(tower: TextTower, alpha: float, pretrained: Callable[[], TextTower] | None = None,
                where: str = "the pre-trained text tower") -> TextTower:
    """Mix ``tower``'s weights in place: (1 - alpha) pre-trained + alpha trained.

    A LoRA tower holds its pre-trained weights: its adapters' output (B) is scaled by alpha. Other
    towers call ``pretrained()`` for the same config built with pre-trained weights; its fingerprint
    must be the one ``tower`` was built from (``where`` names the source in the error).
    """
    alpha = check_alpha(alpha)
    with torch.no_grad():
        if tower.tune == "lora":
            for name, p in tower.named_parameters():
                if ".lora_B." in name:
                    p.mul_(alpha)  # B=0 at alpha 0: the adapters add exactly nothing
            return tower
        if pretrained is None or tower.base_fingerprint is None:
            raise ValueError(f"interpolation needs the pre-trained weights of {tower.name}; it was not built "
                             "from them (model.text.pretrained=false, lock=u, or a scratch tower)")
        source = pretrained()
        if source.base_fingerprint != tower.base_fingerprint:
            raise ValueError(f"{where} ({tower.name}) now has weights with fingerprint {source.base_fingerprint}, "
                             f"but training started from {tower.base_fingerprint}: the source changed, so the "
                             "mix would not be with the tower this model was tuned from")
        start = source.state_dict()
        for key, value in tower.state_dict().items():  # tensors sharing the tower's storage
            if value.is_floating_point() and alpha < 1.0:
                value.copy_(start[key] if alpha == 0.0 else torch.lerp(start[key].to(value), value, alpha))
    return tower


def record_base(tower: TextTower, pretrained: bool) -> TextTower:
    """Keep the fingerprint of the pre-trained weights an unlocked tower starts from (None otherwise)."""
    tower.base_fingerprint = fingerprint(tower) if pretrained and tower.tunable and tower.lock_mode == "U" else None
    return tower
