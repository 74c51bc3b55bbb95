"""open_clip models as littune models, so ``littune eval --model local-dir:DIR`` runs the same evaluators.

Any open_clip folder (``local-dir:DIR``, or a folder with ``open_clip_config.json``; a littune export or
not) is loaded by open_clip itself and wrapped into a ``LiTModel`` whose towers are open_clip's own:

    image tower  open_clip's ``encode_image`` (its projection included) on pixels from open_clip's own
                 eval transform (``preprocess_cfg``), locked, fingerprinted over ``visual.*``
    text tower   open_clip's ``encode_text`` on ids from open_clip's own tokenizer; texts reach it as
                 given (no canonical form: CLIP_benchmark's tokens) unless the folder is a littune
                 export, whose model was trained on canonical texts (towers/canonical.py)
    heads        the identity; ``logit_scale`` (and ``logit_bias``) copied from the open_clip model

The evaluators, ``encode_texts`` and the embedding cache see what they see in any littune model (a
locked image tower with ``fingerprint()``, ``preprocess`` and ``embed_dim``; a tokenizer), so a littune
model and an open_clip model are compared on the same folders by the same code.

A littune export (``open_clip_export.py``) carries a record in ``open_clip_config.json``; its
fingerprints (weights per group, the config, the text config and tokenizer files) are checked before
open_clip builds anything, so an edited export is refused with the part that changed.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..model import LiTModel
from ..runs.export import check_file_hashes
from ..towers import ImageTower
from ..towers.lock import fingerprint_state
from ..towers.text import TextTower, Tokenizer
from .open_clip_export import CONFIG_FILE, RECORD_FORMAT, WEIGHTS_FILE, config_fingerprint, group_fingerprints

SCHEME = "local-dir:"


def open_clip_folder(spec: str | Path) -> Path | None:
    """The folder of an open_clip model spec (``local-dir:DIR`` or a folder with open_clip_config.json)."""
    s = str(spec)
    if s.startswith(SCHEME):
        return Path(s[len(SCHEME):])
    return Path(s) if (Path(s) / CONFIG_FILE).is_file() else None


class OpenCLIPPreprocess:
    """open_clip's own transforms behind littune's ``Preprocess`` interface (what the cache asks for)."""

    def __init__(self, cfg: dict[str, Any]):
        self.cfg = dict(cfg)

    def transform(self):
        from open_clip.transform import PreprocessCfg, image_transform_v2

        return image_transform_v2(PreprocessCfg(**self.cfg), is_train=False)

    def train_transform(self, scale: tuple[float, float] = (0.5, 1.0)):
        from open_clip.transform import PreprocessCfg, image_transform_v2

        return image_transform_v2(PreprocessCfg(**self.cfg), is_train=True, aug_cfg={"scale": scale})

    def to_dict(self) -> dict[str, Any]:
        return {"open_clip": json.loads(json.dumps(self.cfg))}  # as the cache manifest stores it (lists)


class OpenCLIPImageTower(ImageTower):
    """open_clip's image side: (B, 3, H, W) -> (B, E) projected, not yet normalised."""

    def __init__(self, clip: nn.Module, name: str, embed_dim: int, preprocess: OpenCLIPPreprocess):
        super().__init__()
        self.model, self.name, self.embed_dim, self.preprocess = clip.visual, name, embed_dim, preprocess
        self.set_lock("L")

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixels)

    def layer_groups(self) -> list[nn.Module]:
        raise ValueError(f"{self.name}: an open_clip tower is evaluated as it is; it cannot be partly locked")


class OpenCLIPTextTower(TextTower):
    """open_clip's text side: ids (B, context_length) -> (B, E) projected, not yet normalised."""

    length_buckets = 0  # open_clip's text towers see the padded batch its tokenizer makes, as in open_clip

    def __init__(self, clip: nn.Module, tokenizer: Tokenizer, name: str, embed_dim: int):
        super().__init__()
        self.clip, self.tokenizer, self.name, self.embed_dim = clip, tokenizer, name, embed_dim
        self.set_lock("L")

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_text(input_ids)  # open_clip finds padding itself (pad id / argmax token)

    def fingerprint(self) -> str:
        """Over the text side's weights only (a CustomTextCLIP's ``text.*``, a CLIP's non-visual ones)."""
        return fingerprint_state({k: v for k, v in self.clip.state_dict().items()
                                  if not k.startswith("visual.") and k not in ("logit_scale", "logit_bias")})

    def layer_groups(self) -> list[nn.Module]:
        raise ValueError(f"{self.name}: an open_clip tower is evaluated as it is; it cannot be partly locked")


def _definition(oc_tokenizer) -> str | None:
    """What makes the token ids (so text caches can tell tokenizers apart): a Hugging Face tokenizer's
    tokenizer.json, or open_clip's BPE tokenizer's vocabulary, merges and cleaning."""
    inner = getattr(oc_tokenizer, "tokenizer", None)
    backend = getattr(inner, "backend_tokenizer", None)
    if backend is not None:
        return backend.to_str()
    if inner is not None and hasattr(inner, "get_vocab"):
        return repr(sorted(inner.get_vocab().items()))
    if hasattr(oc_tokenizer, "encoder") and hasattr(oc_tokenizer, "bpe_ranks"):
        clean = getattr(getattr(oc_tokenizer, "clean_fn", None), "__name__", "")
        return repr((type(oc_tokenizer).__name__, clean, sorted(oc_tokenizer.encoder.items()),
                     sorted(oc_tokenizer.bpe_ranks.values())))
    return None


def _tokenizer(oc_tokenizer, canonical: bool = False) -> Tokenizer:
    """open_clip's tokenizer behind littune's interface; ``canonical``: put texts in littune's canonical
    form first (only for a model littune trained, which read its captions that way)."""
    inner = getattr(oc_tokenizer, "tokenizer", None)  # HFTokenizer wraps a transformers tokenizer
    pad = getattr(inner, "pad_token_id", None) or 0  # open_clip's own tokenizers pad with 0
    ctx = int(oc_tokenizer.context_length)
    lowercase = False
    if canonical and inner is not None and hasattr(inner, "get_vocab"):
        from ..towers.canonical import needs_lowercase  # as the run's own tokenizer decided (text_hf.py)

        lowercase = needs_lowercase(inner.get_vocab(), getattr(inner, "backend_tokenizer", None),
                                    getattr(inner, "do_lower_case", False))

    def encode(texts: list[str]) -> dict[str, torch.Tensor]:
        ids = oc_tokenizer(texts)  # (B, context_length)
        return {"input_ids": ids, "attention_mask": (ids != pad).long()}

    def save(folder: Path) -> None:
        if not hasattr(oc_tokenizer, "save_pretrained"):
            raise ValueError("this open_clip tokenizer cannot be saved")
        oc_tokenizer.save_pretrained(str(folder))

    return Tokenizer(encode, ctx, int(getattr(inner, "vocab_size", 0) or 0), save, _definition(oc_tokenizer),
                     lowercase, canonical)


def check_record(folder: Path, config: dict[str, Any]) -> None:
    """Refuse a littune export whose weights, config or text files changed after export."""
    record = config.get("littune") or {}
    if record.get("format") != RECORD_FORMAT:
        return  # an open_clip model from elsewhere: nothing was recorded to check against
    where = folder / CONFIG_FILE
    if config_fingerprint(config) != record.get("config_fingerprint"):
        raise ValueError(f"{where}: model_cfg or preprocess_cfg changed after export (config fingerprint "
                         f"{config_fingerprint(config)} != {record.get('config_fingerprint')}); export the model again")
    check_file_hashes(folder, record.get("files", {}), CONFIG_FILE)
    from safetensors.torch import load_file

    have, want = group_fingerprints(load_file(str(folder / WEIGHTS_FILE))), record.get("fingerprints", {})
    bad = [g for g in sorted(set(have) | set(want)) if have.get(g) != want.get(g)]
    if bad:
        raise ValueError(f"{folder / WEIGHTS_FILE}: the weights of {', '.join(bad)} do not match the export's "
                         "fingerprints; the folder is damaged or was edited: export the model again")


def _moved(folder: Path, config: dict[str, Any]) -> dict[str, Any]:
    """create_model overrides for a littune export that was moved: its text files are in the folder."""
    text_cfg = config["model_cfg"].get("text_cfg", {})
    hf = text_cfg.get("hf_model_name")
    if not config.get("littune") or not hf or Path(hf).exists() or not (folder / "config.json").is_file():
        return {}
    where = str(folder.resolve())
    return {"text_cfg": {**text_cfg, "hf_model_name": where, "hf_tokenizer_name": where, "hf_model_pretrained": False}}


def load_open_clip(spec: str | Path, device: str = "cpu") -> LiTModel:
    """An open_clip model folder as a ``LiTModel`` in eval mode (see the module docstring)."""
    folder = open_clip_folder(spec)
    if folder is None or not (folder / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{spec}: not an open_clip model folder (it needs {CONFIG_FILE})")
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
        config["model_cfg"]["embed_dim"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{folder / CONFIG_FILE}: not an open_clip config ({e})") from None
    try:
        import open_clip
    except ImportError:
        raise ValueError(f"{spec} is an open_clip model: reading it needs `pip install open-clip-torch`") from None
    check_record(folder, config)
    clip, _, _ = open_clip.create_model_and_transforms(f"{SCHEME}{folder}", device=device, **_moved(folder, config))
    clip.eval()
    tokenizer = open_clip.get_tokenizer(f"{SCHEME}{folder}")
    dim, name = int(config["model_cfg"]["embed_dim"]), f"open_clip:{folder.resolve().name}"
    image = OpenCLIPImageTower(clip, name, dim, OpenCLIPPreprocess(clip.visual.preprocess_cfg))
    trained_here = (config.get("littune") or {}).get("format") == RECORD_FORMAT  # the record asks for it
    text = OpenCLIPTextTower(clip, _tokenizer(tokenizer, canonical=trained_here), name, dim)
    model = LiTModel(image, text, image_head="none", text_head=nn.Identity(), embed_dim=dim,
                     init_temperature=math.exp(float(clip.logit_scale.detach().reshape(-1)[0])))
    with torch.no_grad():
        model.logit_scale.copy_(clip.logit_scale.detach().reshape(()))
        if getattr(clip, "logit_bias", None) is not None:
            model.logit_bias.copy_(clip.logit_bias.detach().reshape(()))
    return model.to(device).eval()


def load_model(spec: str | Path, device: str = "cpu") -> LiTModel:
    """What ``littune eval`` evaluates: a run, a littune export or an open_clip folder -> ``LiTModel``."""
    if open_clip_folder(spec) is not None:
        return load_open_clip(spec, device)
    from ..runs import load_run

    model, _ = load_run(spec)
    return model.to(device).eval()
