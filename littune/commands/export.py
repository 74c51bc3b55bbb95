"""``littune export``: a self-contained model folder (littune's format or open_clip's), with a model card."""
from __future__ import annotations

import argparse
import json

from .base import command


@command("export", "write a trained model as a self-contained folder: littune's format (+ transformers where "
                   "possible) or open_clip's, with a model card")
def _export(p: argparse.ArgumentParser):
    p.add_argument("--model", required=True, help="run directory (littune train/demo) or littune export")
    p.add_argument("--out", required=True, help="new folder for the export")
    p.add_argument("--format", default="littune", choices=("littune", "open_clip"),
                   help="littune: littune.load reads it; open_clip: open_clip.create_model_and_transforms"
                        "('local-dir:OUT') reads it (default littune)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists and is not empty")
    p.add_argument("--license", default="other", help="the license the model card declares (default other)")
    p.add_argument("--no-hf", action="store_true", help="littune format: skip the transformers "
                                                         "VisionTextDualEncoderModel folder")

    def run(a: argparse.Namespace) -> int:
        from ..infer import load
        from ..infer.export import export_model

        meta = export_model(load(a.model), a.out, format=a.format, hf=not a.no_hf, force=a.force,
                            license=a.license)
        out = {"out": a.out, "format": a.format, "embed_dim": meta["embed_dim"], "image": meta["image"],
               "text": meta["text"], "card": f"{a.out}/README.md"}
        if a.format == "littune":
            hf = meta["hf_dual_encoder"]
            out.update(image=meta["image"]["name"], text=meta["text"]["name"],
                       hf_dual_encoder=f"{a.out}/{hf}" if hf else None,
                       hf_dual_encoder_skipped=meta["hf_dual_encoder_skipped"])
        else:
            out["open_clip"] = f"local-dir:{a.out}"
        print(json.dumps(out))
        return 0

    return run
