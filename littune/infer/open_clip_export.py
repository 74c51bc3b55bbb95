"""Write a LiT model as an open_clip model folder: ``open_clip.create_model_and_transforms("local-dir:DIR")``.

open_clip (github.com/mlfoundations/open_clip, >= 3.0) builds a ``CustomTextCLIP`` from the
``model_cfg`` of ``DIR/open_clip_config.json`` and loads ``DIR/open_clip_model.safetensors`` strictly
(``factory.create_model``); ``get_tokenizer("local-dir:DIR")`` reads the tokenizer in DIR. Its rules,
read from its source (``timm_model.py``, ``hf_model.py``, ``model.py``, ``transform.py``):

  image  ``visual = TimmModel(timm_model_name, pool=timm_pool, proj=timm_proj, proj_bias=timm_proj_bias)``:
         proj ``none`` creates the trunk with ``num_classes=0, global_pool=pool`` (pooled pre-logits,
         littune's feature); ``linear`` / ``mlp`` create it whole, drop the classifier with
         ``reset_classifier(0, global_pool=pool)`` and add ``head.proj`` (Linear, bias optional) or
         ``head.mlp`` (timm Mlp: fc1 width 2·E with a bias, GELU, fc2 with the optional bias).
  text   ``text = HFTextEncoder(hf_model_name, pooler_type, proj_type)``: ``mean_pooler`` averages the
         tokens that are not padding, ``cls_last_hidden_state_pooler`` takes the first token (the
         transformer is built without BERT's pooler); ``proj_type`` ``linear`` is one Linear and ``mlp``
         Linear((d+E)//2) - GELU - Linear, both WITHOUT bias; None is the identity (d == E). Only the
         model types in its ``hf_configs.arch_dict`` that are not encoder-decoders can be built here.
  logits ``logit_scale`` is stored in log space like littune's; ``logit_bias`` exists only when the
         config has ``init_logit_bias`` (sigmoid models).
  pixels the eval transform resizes the shorter side to ``size`` and centre-crops ``size`` (torchvision,
         bicubic or bilinear): littune's transform is the same only with ``crop_pct`` 1.

Everything is checked before anything is written; what does not fit raises ``NotRepresentable`` naming
the part and the config change that makes it fit. The image trunk is rebuilt the way open_clip builds
it and run once on a test input, so a wrong pooling guess fails here rather than in a user's hands.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..runs.export import file_hashes
from ..towers.lock import fingerprint_state

CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"
RECORD_FORMAT = "littune-open_clip"
RECORD_VERSION = 1
_TEXT_TYPES = ("bert", "roberta", "xlm-roberta")  # arch_dict entries that HFTextEncoder builds as encoders
_POOLERS = {"mean": "mean_pooler", "first": "cls_last_hidden_state_pooler", "cls": "cls_last_hidden_state_pooler"}
_INTERPOLATIONS = ("bicubic", "bilinear")
# Prefixes of the exported state dict, one per weight group (the record's fingerprints follow them).
GROUPS = {"image": "visual.trunk.", "image_head": "visual.head.", "text": "text.transformer.",
          "text_head": "text.proj.", "logit_scale": "logit_scale", "logit_bias": "logit_bias"}


class NotRepresentable(ValueError):
    """The model has a part that open_clip cannot express; the message names it and the fix."""

    def __init__(self, part: str, why: str, fix: str):
        self.problems = [(part, why, fix)]
        super().__init__(f"cannot export as open_clip: the {part} {why}. To make the model exportable: {fix}")

    @classmethod
    def joined(cls, errors: list["NotRepresentable"]) -> "NotRepresentable":
        """One error naming every part that does not fit (the image side's and the text side's)."""
        if len(errors) == 1:
            return errors[0]
        problems = [p for e in errors for p in e.problems]
        e = cls(*problems[0])
        e.problems = problems
        e.args = ("cannot export as open_clip:\n" + "\n".join(
            f"  the {part} {why}. To make the model exportable: {fix}" for part, why, fix in problems),)
        return e


@dataclass
class OpenCLIPPlan:
    """Everything the folder will hold, computed (and checked) before anything is written."""

    model_cfg: dict[str, Any]
    preprocess_cfg: dict[str, Any]
    state: dict[str, torch.Tensor] = field(repr=False)

    def fingerprints(self) -> dict[str, str]:
        return group_fingerprints(self.state)


def group_fingerprints(state: dict[str, torch.Tensor]) -> dict[str, str]:
    """One fingerprint per weight group of an open_clip state dict (groups absent from it are left out)."""
    out = {}
    for group, prefix in GROUPS.items():
        part = {k: v for k, v in state.items() if k.startswith(prefix)}
        if part:
            out[group] = fingerprint_state(part)
    return out


def config_fingerprint(config: dict[str, Any]) -> str:
    """A fingerprint of what ``open_clip_config.json`` says about the model, minus where the text
    model's files lie (``hf_model_name`` / ``hf_tokenizer_name``: a moved folder is still the same model)."""
    import hashlib

    model_cfg = json.loads(json.dumps(config.get("model_cfg", {})))
    for key in ("hf_model_name", "hf_tokenizer_name"):
        model_cfg.get("text_cfg", {}).pop(key, None)
    body = json.dumps({"model_cfg": model_cfg, "preprocess_cfg": config.get("preprocess_cfg", {})}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


# ---- image side -----------------------------------------------------------------------------------
def _timm_name(name: str) -> str:
    if name == "efficientnet_lite0":
        return "tf_efficientnet_lite0"  # the packaged weights live in timm's tf_efficientnet_lite0
    if name.startswith("timm:"):
        return name[len("timm:"):]
    raise NotRepresentable("image tower", f"{name!r} is not a timm model: open_clip builds image towers from "
                           "timm (or its own ViT / ResNet code, which littune does not train)",
                           "train with a timm image tower: model.image.name=efficientnet_lite0 or timm:<model>")


def _timm_pool(model: nn.Module) -> str:
    """The trunk's own global pooling ('avg', 'token', ...), which open_clip must be told."""
    for owner in (model, getattr(model, "head", None)):
        gp = getattr(owner, "global_pool", None)
        if isinstance(gp, str):
            return gp
        if gp is not None and isinstance(getattr(gp, "pool_type", None), str):
            return gp.pool_type
    raise NotRepresentable("image tower", f"{type(model).__name__} has no global_pool that open_clip's timm_pool "
                           "can name", "train with a timm model that has one (efficientnet_lite0, resnet50, vit_*)")


def _linears(head: nn.Module, where: str) -> list[nn.Linear]:
    """The Linear layers of a littune head (Identity: none); anything but Linear/GELU/Dropout is refused."""
    if isinstance(head, nn.Identity):
        return []
    if isinstance(head, nn.Linear):
        return [head]
    if isinstance(head, nn.Sequential) and all(isinstance(m, (nn.Linear, nn.GELU, nn.Dropout)) for m in head):
        if any(isinstance(m, nn.GELU) and m.approximate != "none" for m in head):
            raise NotRepresentable(where, "uses the tanh GELU approximation; open_clip's MLPs use the exact GELU",
                                   "build the head with littune's heads.make_head (head=mlp)")
        return [m for m in head if isinstance(m, nn.Linear)]
    raise NotRepresentable(where, f"is a {type(head).__name__}, which open_clip has no projection for",
                           "use model.*.head=none, linear or mlp")


def _image_head(head: nn.Module, embed_dim: int) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(vision_cfg entries, head weights under ``visual.head.``)."""
    lin = _linears(head, "image head")
    if not lin:
        return {"timm_proj": "none"}, {}
    if len(lin) == 1:
        state = {"visual.head.proj.weight": lin[0].weight}
        if lin[0].bias is not None:
            state["visual.head.proj.bias"] = lin[0].bias
        return {"timm_proj": "linear", "timm_proj_bias": lin[0].bias is not None}, state
    if len(lin) != 2 or lin[0].out_features != 2 * embed_dim:
        raise NotRepresentable("image head", f"is an MLP of {len(lin)} layers and width {lin[0].out_features}; "
                               f"open_clip's timm MLP has 2 layers of width 2 x embed_dim = {2 * embed_dim}",
                               f"model.image.head_depth=2 model.image.head_hidden={2 * embed_dim} (or head=linear)")
    fc1, fc2 = lin
    state = {"visual.head.mlp.fc1.weight": fc1.weight,
             # open_clip's fc1 always has a bias: a head trained without one gets zeros (the same function)
             "visual.head.mlp.fc1.bias": fc1.bias if fc1.bias is not None else torch.zeros(fc1.out_features),
             "visual.head.mlp.fc2.weight": fc2.weight}
    if fc2.bias is not None:
        state["visual.head.mlp.fc2.bias"] = fc2.bias
    return {"timm_proj": "mlp", "timm_proj_bias": fc2.bias is not None}, state


def open_clip_trunk(timm_name: str, pool: str, proj: str) -> nn.Module:
    """The timm trunk exactly as open_clip's TimmModel creates it (timm_model.py), random init."""
    import timm

    if proj == "none":
        return timm.create_model(timm_name, num_classes=0, global_pool=pool, pretrained=False)
    trunk = timm.create_model(timm_name, pretrained=False)
    trunk.reset_classifier(0, **(dict(global_pool=pool) if pool else {}))
    return trunk


@torch.no_grad()
def _image_side(lit) -> tuple[dict[str, Any], dict[str, Any], dict[str, torch.Tensor]]:
    """(vision_cfg, preprocess_cfg, weights) of the image tower and head."""
    model, icfg = lit.model, lit.cfg.model.image
    if icfg.concat or len(icfg.averaged_views) > 1:
        raise NotRepresentable("image tower", f"is {model.image.name} (model.image.concat / averaged_views); open_clip "
                               "runs one tower on one view of the image", "export in littune's own format")
    timm_name = _timm_name(icfg.name)
    unknown = sorted(set(icfg.kwargs) - {"pretrained_cfg_overlay"})
    if unknown:
        raise NotRepresentable("image tower", f"is built with model.image.kwargs {unknown}; open_clip creates "
                               f"{timm_name} with timm's defaults", "train without those model.image.kwargs")
    pre = model.image.preprocess
    if pre.crop_pct != 1.0:
        raise NotRepresentable(
            "image preprocessing", f"resizes to {pre.resize_size} px and crops {pre.input_size} (crop_pct "
            f"{pre.crop_pct}); open_clip's transform resizes the shorter side to the crop size itself",
            "train with model.image.crop_pct=1.0")
    if pre.resize_mode not in ("shortest", "squash"):
        raise NotRepresentable("image preprocessing", f"uses resize_mode {pre.resize_mode!r}; open_clip's transform "
                               "pads with its fill colour, not the mean", "train with model.image.resize_mode=squash")
    if pre.interpolation not in _INTERPOLATIONS:
        raise NotRepresentable("image preprocessing", f"interpolates {pre.interpolation!r}; open_clip's transform "
                               f"knows {' and '.join(_INTERPOLATIONS)}",
                               "train with model.image.kwargs.pretrained_cfg_overlay.interpolation=bicubic")
    tower = model.image.model
    pool = _timm_pool(tower)
    head_cfg, head_state = _image_head(model.image_head, model.embed_dim)
    trunk = open_clip_trunk(timm_name, pool, head_cfg["timm_proj"]).eval()
    own = {k: v.detach().contiguous() for k, v in tower.state_dict().items()}
    want = trunk.state_dict()
    missing = [k for k in want if k not in own or own[k].shape != want[k].shape]
    classifier = tuple(f"{c}." for c in model.image._classifier_names())
    extra = [k for k in own if k not in want and not k.startswith(classifier)]
    if missing or extra:
        raise NotRepresentable("image tower", f"does not fit open_clip's {timm_name} trunk (missing {missing[:4]}, "
                               f"unexpected {extra[:4]})", "train with a plain timm model (no custom layers)")
    trunk.load_state_dict({k: own[k] for k in want}, strict=True)
    x = torch.randn(2, 3, pre.input_size, pre.input_size, generator=torch.Generator().manual_seed(0))
    device = next(model.image.parameters()).device
    if not torch.allclose(trunk(x), model.image(x.to(device)).cpu(), atol=1e-4, rtol=1e-4):
        raise NotRepresentable("image tower", f"pooled with timm_pool={pool!r} gives other features than littune's "
                               "tower", "train with a timm model whose pooled pre-logits open_clip can build")
    vision_cfg = {"timm_model_name": timm_name, "timm_model_pretrained": False, "timm_pool": pool,
                  "timm_proj_bias": False, "timm_drop": 0.0, "image_size": pre.input_size, **head_cfg}
    preprocess_cfg = {"size": pre.input_size, "mode": "RGB", "mean": list(pre.mean), "std": list(pre.std),
                      "interpolation": pre.interpolation, "resize_mode": pre.resize_mode, "fill_color": 0}
    state = {f"visual.trunk.{k}": own[k] for k in want}
    return vision_cfg, preprocess_cfg, {**state, **head_state}


# ---- text side ------------------------------------------------------------------------------------
def _zero_or_none(bias: torch.Tensor | None) -> bool:
    return bias is None or not bool(bias.detach().abs().max() > 0)


def _pad_id(tokenizer) -> int | None:
    """The id the tokenizer pads with: read off a padded batch (littune's Tokenizer hides its tokenizer)."""
    tokens = tokenizer(["a", "a b c d e f g h"])
    pads = tokens["input_ids"][0][tokens["attention_mask"][0] == 0]
    return int(pads[0]) if len(pads) else None  # None: a context too short to pad anything


def _text_head(head: nn.Module, d_in: int, embed_dim: int) -> tuple[str | None, dict[str, torch.Tensor]]:
    """(hf_proj_type, weights under ``text.proj.``)."""
    lin = _linears(head, "text head")
    if any(not _zero_or_none(m.bias) for m in lin):
        raise NotRepresentable("text head", "has a bias; open_clip's text projections (proj_type linear and mlp) "
                               "have none", "train with model.text.head_bias=false")
    if not lin:
        return None, {}
    if len(lin) == 1:
        return "linear", {"text.proj.weight": lin[0].weight}
    hidden = (d_in + embed_dim) // 2
    if len(lin) != 2 or lin[0].out_features != hidden:
        raise NotRepresentable("text head", f"is an MLP of {len(lin)} layers and width {lin[0].out_features}; "
                               f"open_clip's text MLP has 2 layers of width ({d_in} + {embed_dim}) // 2 = {hidden}",
                               "model.text.head=mlp model.text.head_depth=2 model.text.head_hidden=0")
    return "mlp", {"text.proj.0.weight": lin[0].weight, "text.proj.2.weight": lin[1].weight}


def _text_side(lit, folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(text_cfg, weights) of the text tower and head; ``folder`` is where its config and tokenizer go."""
    model, tcfg = lit.model, lit.cfg.model.text
    if tcfg.name == "scratch":
        raise NotRepresentable("text tower", "is littune's from-scratch transformer, which open_clip cannot build",
                               "train with a Hugging Face text tower: model.text.name=minilm or hf:<name>")
    text = model.text
    config = text.model.config
    if config.model_type not in _TEXT_TYPES:
        raise NotRepresentable("text tower", f"is a {config.model_type!r} model; open_clip's HFTextEncoder builds "
                               f"{', '.join(_TEXT_TYPES)} encoders", "train with a BERT or RoBERTa text tower "
                               "(model.text.name=minilm)")
    if text.pooling not in _POOLERS:
        raise NotRepresentable("text tower", f"pools with {text.pooling!r}; open_clip pools mean or the first token",
                               "train with model.text.pooling=mean (or first)")
    tok_pad = _pad_id(text.tokenizer)
    if config.pad_token_id is None or tok_pad not in (None, config.pad_token_id):
        raise NotRepresentable("text tower", f"pads with token {tok_pad} but its config says {config.pad_token_id}; "
                               "open_clip finds padding by the config's pad_token_id", "fix the tower's config.json")
    proj_type, head_state = _text_head(model.text_head, text.embed_dim, model.embed_dim)
    from transformers import AutoModel

    with torch.device("meta"):  # the key names and shapes open_clip's transformer has, without its weights
        want = AutoModel.from_config(config, add_pooling_layer=False).state_dict()
    own = {k: v.detach().contiguous() for k, v in text.model.state_dict().items()}
    missing = [k for k in want if k not in own or own[k].shape != want[k].shape]
    extra = [k for k in own if k not in want and not k.startswith("pooler.")]  # BERT's pooler goes unused
    if missing or extra:
        raise NotRepresentable("text tower", f"does not fit open_clip's {config.model_type} transformer "
                               f"(missing {missing[:4]}, unexpected {extra[:4]})", "train with model.text.name=minilm")
    where = str(folder.resolve())
    text_cfg = {"hf_model_name": where, "hf_tokenizer_name": where, "hf_model_pretrained": False,
                "hf_pooler_type": _POOLERS[text.pooling], "hf_proj_type": proj_type,
                "context_length": text.context_length}
    return text_cfg, {**{f"text.transformer.{k}": own[k] for k in want}, **head_state}


# ---- both -----------------------------------------------------------------------------------------
def plan_open_clip(lit, folder: str | Path) -> OpenCLIPPlan:
    """Check that ``lit`` (a ``LiT``) fits open_clip and compute what ``folder`` will hold; writes nothing.

    ``folder`` is the export's final place: open_clip finds the text model's config and tokenizer
    through the absolute path written into ``text_cfg`` (``littune eval`` also finds them after a move).
    """
    model, errors = lit.model, []
    try:
        vision_cfg, preprocess_cfg, image_state = _image_side(lit)
    except NotRepresentable as e:
        errors.append(e)
    try:
        text_cfg, text_state = _text_side(lit, Path(folder))
    except NotRepresentable as e:
        errors.append(e)
    if errors:
        raise NotRepresentable.joined(errors)
    model_cfg = {"embed_dim": model.embed_dim, "vision_cfg": vision_cfg, "text_cfg": text_cfg,
                 "init_logit_scale": float(model.logit_scale.detach())}
    state = {**image_state, **text_state, "logit_scale": model.logit_scale}
    if lit.cfg.train.loss == "sigmoid":  # SigLIP's bias is part of the logits only for the sigmoid loss
        model_cfg["init_logit_bias"] = float(model.logit_bias.detach())
        state["logit_bias"] = model.logit_bias
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    return OpenCLIPPlan(model_cfg, preprocess_cfg, state)


def write_open_clip(lit, plan: OpenCLIPPlan, folder: Path, source: str | None) -> dict[str, Any]:
    """Write the planned folder into ``folder`` (made by the caller, empty, renamed to the planned one after).

    ``open_clip_config.json`` also carries a ``littune`` record that open_clip ignores: the source
    run, littune's fingerprints and the export's own (per weight group and of the config), which
    ``littune eval`` checks when it loads the folder.
    """
    from safetensors.torch import save_file

    save_file(plan.state, str(folder / WEIGHTS_FILE))
    lit.model.text.model.config.save_pretrained(folder)  # config.json: open_clip's hf_model_name
    lit.model.text.tokenizer.save(folder)  # open_clip's get_tokenizer reads DIR itself
    config = {"model_cfg": plan.model_cfg, "preprocess_cfg": plan.preprocess_cfg}
    record = {"format": RECORD_FORMAT, "format_version": RECORD_VERSION, "source": source,
              "image": lit.model.image.name, "text": lit.model.text.name, "embed_dim": lit.model.embed_dim,
              "temperature": lit.model.temperature, "loss": lit.cfg.train.loss,
              "littune_fingerprints": lit.model.fingerprints(), "fingerprints": plan.fingerprints(),
              "config_fingerprint": config_fingerprint(config),
              "files": file_hashes(folder, skip={WEIGHTS_FILE, CONFIG_FILE})}  # config.json, the tokenizer
    (folder / CONFIG_FILE).write_text(json.dumps({**config, "littune": record}, indent=2) + "\n")
    return record
