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


# Image towers made of registered ones (towers/composite.py): config keys, not registry names.
COMPOSITES = [
    {"key": "model.image.concat",
     "example": "[{name: efficientnet_lite2, weight: 1.0}]",
     "embed_dim": "sum of the members'",
     "description": "several locked towers as one, each on its own preprocessing, "
                    "L2-normalised, weighted and joined in order (docs/towers.md)"},
    {"key": "model.image.averaged_views",
     "example": "[shortest, squash, border]",
     "embed_dim": "the tower's",
     "description": "one locked tower's features averaged over fixed views of each image (docs/towers.md)"},
]


def describe_registered(image: list[dict[str, Any]], text: list[dict[str, Any]]) -> dict[str, Any]:
    out_image = [dict(t) for t in image]
    for t in out_image:
        if t["name"] in FAMILY_NOTES:
            t["embed_dim"], t["preprocess"] = FAMILY_NOTES[t["name"]]
    out_text = [dict(t) for t in text]
    for t in out_text:
        t.setdefault("embed_dim", {"scratch": "width (default 256)", "hf:*": "config.hidden_size"}.get(t["name"]))
    return {"image": out_image, "image_composites": [dict(c) for c in COMPOSITES], "text": out_text}


def format_preprocess(pre: Any) -> str:
    if isinstance(pre, dict):
        return (f"{pre['input_size']}px, {pre.get('resize_mode', 'shortest')}, crop {pre['crop_pct']}, {pre['interpolation']}, "
                f"mean {tuple(pre['mean'])}, std {tuple(pre['std'])}")
    return str(pre or "")
