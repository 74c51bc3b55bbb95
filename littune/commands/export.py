"""``littune export``: a self-contained model folder (littune's format or open_clip's), with a model card."""
from __future__ import annotations

import argparse
import json
import sys

from .base import add_json, add_model, command


@command("export", "write a trained model as a self-contained folder: littune's format (+ transformers where "
                   "possible) or open_clip's, with a model card")
def _export(p: argparse.ArgumentParser):
    add_model(p)
    p.add_argument("--out", required=True, help="new folder for the export")
    p.add_argument("--format", default="littune", choices=("littune", "open_clip"),
                   help="littune: littune.load reads it; open_clip: open_clip.create_model_and_transforms"
                        "('local-dir:OUT') reads it")
    p.add_argument("--force", action="store_true", help="replace --out if it exists and is not empty")
    p.add_argument("--license", default="other", help="the license the model card declares")
    p.add_argument("--no-hf", action="store_true", help="littune format: skip the transformers "
                                                         "VisionTextDualEncoderModel folder")
    add_json(p, "the export's summary (out, format, embed_dim, image, text, card; littune: hf_dual_encoder, "
                "hf_dual_encoder_skipped; open_clip: open_clip)")

    def run(a: argparse.Namespace) -> int:
        from ..infer import load
        from ..infer.export import export_model

        meta = export_model(load(a.model), a.out, format=a.format, hf=not a.no_hf, force=a.force,
                            license=a.license)
        summary = {"out": a.out, "format": a.format, "embed_dim": meta["embed_dim"], "image": meta["image"],
                   "text": meta["text"], "card": f"{a.out}/README.md"}
        if a.format == "littune":
            hf, skipped = meta["hf_dual_encoder"], meta["hf_dual_encoder_skipped"]
            summary.update(image=meta["image"]["name"], text=meta["text"]["name"],
                           hf_dual_encoder=f"{a.out}/{hf}" if hf else None, hf_dual_encoder_skipped=skipped)
            if skipped and not a.no_hf:  # said where it is seen, not only written in export.json
                print(f"littune export: no transformers dual encoder: {skipped}", file=sys.stderr)
        else:
            summary["open_clip"] = f"local-dir:{a.out}"
        if a.json:
            print(json.dumps(summary))
        elif a.format == "littune":
            print(f"exported {summary['image']} + {summary['text']} (embed_dim {summary['embed_dim']}) to {a.out}"
                  + (f"; transformers dual encoder in {summary['hf_dual_encoder']}" if hf else ""))
        else:
            print(f"exported an open_clip model (embed_dim {summary['embed_dim']}) to {a.out}: "
                  f"open_clip.create_model_and_transforms('local-dir:{a.out}') reads it")
        return 0

    return run
