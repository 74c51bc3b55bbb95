"""The export folder format: a self-contained model folder that ``littune.load`` reads without the run.

    export.json          format, where it came from, every weight group's fingerprint, the other files' hashes
    config.yaml          the run's experiment config (tower sources are rewritten at load time)
    model.safetensors    every weight, the locked image tower's too (a run leaves those out)
    model_info.json      fingerprints, as in a run directory
    tokenizer/           the text tower's tokenizer (tokenizer.json for a scratch tower)
    image_hf/, text_hf/  config (+ image processor / tokenizer) of Hugging Face towers, so they are
                         rebuilt from the folder with no hub or package
    hf_dual_encoder/     where both towers come from Hugging Face: a transformers
                         VisionTextDualEncoderModel with the same embeddings (see hf_dual.py)
    README.md, metrics.json  the model card and the run's evaluation results (infer/card.py)

Loading builds every tower without pre-trained weights, loads all weights strictly, and checks the
fingerprints recorded at export (weights per group; every other file it reads by its hash, so an
edited config.yaml or tokenizer is refused too): the export is provably the model that was trained.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..config import ExperimentConfig, load_config, to_yaml
from ..model import LiTModel
from ..towers.tuning import merge_lora
from .files import CONFIG_FILE, EXPORT_FILE, INFO_FILE, MODEL_FILE, TOKENIZER_DIR
from .weights import WeightsError, check_fingerprints, check_shapes, compare_fingerprints, read_json, read_weights
FORMAT = "littune-export"
FORMAT_VERSION = 1


HASHED_SKIP = {EXPORT_FILE, MODEL_FILE, "README.md", "metrics.json"}  # weights have fingerprints; the card is prose
OTHER_FORMATS = ("hf_dual_encoder/",)  # folders littune itself never reads


def _hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def file_hashes(folder: Path, skip: set[str] = frozenset(), skip_dirs: tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 (16 hex digits) of every file under ``folder`` but ``skip`` / ``skip_dirs`` (relative paths)."""
    files = {p.relative_to(folder).as_posix(): p for p in sorted(Path(folder).rglob("*")) if p.is_file()}
    return {rel: _hash(p) for rel, p in files.items() if rel not in skip and not rel.startswith(skip_dirs)}


def check_file_hashes(folder: Path, recorded: dict[str, str], where: str) -> None:
    """Refuse a folder whose files differ from (or lack) the hashes recorded when it was written."""
    folder = Path(folder)
    changed = [rel for rel, want in recorded.items()
               if not (folder / rel).is_file() or _hash(folder / rel) != want]
    if changed:
        raise ValueError(f"{folder}: {', '.join(changed[:5])} changed after export (the hashes recorded in "
                         f"{where} differ); the folder is damaged or was edited: export the model again")


def is_export(path: str | Path) -> bool:
    return (Path(path) / EXPORT_FILE).is_file()


def _hf_spec(name: str) -> str | None:
    return name[3:] if name.startswith("hf:") else None


def _save_hf_image(model: LiTModel, cfg: ExperimentConfig, folder: Path) -> str | None:
    spec = _hf_spec(cfg.model.image.name)
    if spec is None and not any(_hf_spec(m.name) for m in cfg.model.image.concat):
        return None
    if cfg.model.image.concat or len(cfg.model.image.averaged_views) > 1:
        raise ValueError(f"cannot export {model.image.name}: a concatenation or averaged views with hf: towers "
                         "(model.image.concat / averaged_views) would need each tower's folder; not written yet")
    from transformers import AutoImageProcessor

    model.image.model.config.save_pretrained(folder / "image_hf")
    AutoImageProcessor.from_pretrained(spec).save_pretrained(folder / "image_hf")
    return "image_hf"


def _save_hf_text(model: LiTModel, cfg: ExperimentConfig, folder: Path) -> str | None:
    if cfg.model.text.name == "scratch":
        return None
    model.text.model.config.save_pretrained(folder / "text_hf")
    model.text.tokenizer.save(folder / "text_hf")
    return "text_hf"


def merged_copy(model: LiTModel, cfg: ExperimentConfig) -> tuple[LiTModel, ExperimentConfig]:
    """A LoRA-tuned text tower as plain weights (adapters folded in) and a config that builds such a
    tower (``model.text.tune=full``); other models are returned as they are."""
    if model.text.tune != "lora":
        return model, cfg
    model, cfg = copy.deepcopy(model), copy.deepcopy(cfg)
    merge_lora(model.text)
    cfg.model.text.tune = "full"
    return model, cfg


def write_export(model: LiTModel, cfg: ExperimentConfig, folder: Path, source: str | None,
                 extra: dict | None = None) -> dict:
    """Write ``model`` in littune's export format into ``folder`` (which the caller made, empty).

    ``extra`` (e.g. what other formats were written beside it) goes into export.json too.
    """
    model, cfg = merged_copy(model, cfg)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / MODEL_FILE))
    (folder / CONFIG_FILE).write_text(to_yaml(cfg))
    info = {"fingerprints": model.fingerprints(), "not_saved": [], "embed_dim": model.embed_dim}
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2))
    if cfg.model.text.name == "scratch":
        model.text.tokenizer.save(folder / TOKENIZER_DIR)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "source": source,
            "image": {"name": model.image.name, "folder": _save_hf_image(model, cfg, folder)},
            "text": {"name": model.text.name, "folder": _save_hf_text(model, cfg, folder)},
            "embed_dim": model.embed_dim, "temperature": model.temperature,
            "fingerprints": info["fingerprints"], "files": file_hashes(folder, HASHED_SKIP, OTHER_FORMATS),
            **(extra or {})}
    (folder / EXPORT_FILE).write_text(json.dumps(meta, indent=2))
    return meta


def read_export_meta(folder: str | Path) -> dict:
    meta = read_json(Path(folder) / EXPORT_FILE, EXPORT_FILE)
    if not isinstance(meta.get("fingerprints"), dict):
        raise WeightsError(f"{Path(folder) / EXPORT_FILE} holds no fingerprints: the export cannot be verified")
    return meta


def load_export(folder: str | Path, check: bool = True) -> tuple[LiTModel, ExperimentConfig]:
    """(model in eval mode, config) from an export folder; nothing outside it is read.

    Every weight group's fingerprint is recomputed and compared with export.json's; ``check=False``
    loads without refusing a mismatch (``littune verify`` reports it instead)."""
    folder = Path(folder)
    meta = read_export_meta(folder)
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{folder / EXPORT_FILE}: not a {FORMAT} v{FORMAT_VERSION} folder")
    check_file_hashes(folder, meta.get("files", {}), EXPORT_FILE)  # before config.yaml is trusted
    cfg = load_config(folder / CONFIG_FILE)
    build_cfg = copy.deepcopy(cfg)  # a copy whose tower sources point into the folder
    img, txt = build_cfg.model.image, build_cfg.model.text
    img.pretrained, img.checkpoint, txt.pretrained = False, None, False
    if meta["image"]["folder"]:
        img.name = f"hf:{folder / meta['image']['folder']}"
    if meta["text"]["folder"]:
        txt.name = f"hf:{folder / meta['text']['folder']}"
    tokenizer = str(folder / TOKENIZER_DIR) if txt.name == "scratch" else None
    model = build_cfg.model.build(tokenizer=tokenizer)
    model.image.name, model.text.name = meta["image"]["name"], meta["text"]["name"]
    state = read_weights(folder / MODEL_FILE)
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise WeightsError(f"{folder / MODEL_FILE} does not fit the model in its config.yaml: "
                           f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    check_shapes(model, state, folder / MODEL_FILE)
    with torch.no_grad():
        model.load_state_dict(state, strict=True)
    if check:
        check_fingerprints(compare_fingerprints(model, meta["fingerprints"]), folder)
    return model.eval(), cfg
