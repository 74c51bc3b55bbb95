"""What ``littune towers`` shows: registry entries with embedding size and default preprocessing.

Families (``timm:*``, ``hf:*``) take both from each model's own config, so they are described in
words; the packaged default is described exactly, as declared in ``catalog.py`` (a test holds it
equal to the built tower's): listing imports no torch.
"""
from __future__ import annotations

from typing import Any

FAMILY_NOTES = {
    "timm:*": ("model's num_features", "from the model's timm pretrained_cfg"),
    "hf:*": ("config.hidden_size", "from the model's preprocessor_config.json"),
}


def describe_registered(image: list[dict[str, Any]], text: list[dict[str, Any]]) -> dict[str, Any]:
    out_image = [dict(t) for t in image]
    for t in out_image:
        if t["name"] in FAMILY_NOTES:
            t["embed_dim"], t["preprocess"] = FAMILY_NOTES[t["name"]]
    out_text = [dict(t) for t in text]
    for t in out_text:
        t.setdefault("embed_dim", {"scratch": "width (default 256)", "hf:*": "config.hidden_size"}.get(t["name"]))
    return {"image": out_image, "text": out_text}


def format_preprocess(pre: Any) -> str:
    if isinstance(pre, dict):
        return (f"{pre['input_size']}px, {pre.get('resize_mode', 'shortest')}, crop {pre['crop_pct']}, {pre['interpolation']}, "
                f"mean {tuple(pre['mean'])}, std {tuple(pre['std'])}")
    return str(pre or "")
