"""``littune export``: a self-contained model folder (safetensors, config, tokenizer; + transformers)."""
from __future__ import annotations

import argparse
import json
import sys

from .base import add_json, add_model, command


@command("export", "write a trained model as a self-contained folder (and a transformers model where possible)")
def _export(p: argparse.ArgumentParser):
    add_model(p, what="run directory (littune train/demo, e.g. runs/demo/latest)")
    p.add_argument("--out", required=True, help="new folder for the export")
    p.add_argument("--no-hf", action="store_true", help="skip the transformers VisionTextDualEncoderModel folder")
    add_json(p, "the export's summary (out, embed_dim, image, text, hf_dual_encoder, hf_dual_encoder_skipped)")

    def run(a: argparse.Namespace) -> int:
        from ..infer import load
        from ..infer.export import export_model

        meta = export_model(load(a.model), a.out, hf=not a.no_hf)
        hf, skipped = meta["hf_dual_encoder"], meta["hf_dual_encoder_skipped"]
        summary = {"out": a.out, "embed_dim": meta["embed_dim"], "image": meta["image"]["name"],
                   "text": meta["text"]["name"], "hf_dual_encoder": f"{a.out}/{hf}" if hf else None,
                   "hf_dual_encoder_skipped": skipped}
        if skipped and not a.no_hf:  # said where it is seen, not only written in export.json
            print(f"littune export: no transformers dual encoder: {skipped}", file=sys.stderr)
        if a.json:
            print(json.dumps(summary))
        else:
            print(f"exported {summary['image']} + {summary['text']} (embed_dim {summary['embed_dim']}) to {a.out}"
                  + (f"; transformers dual encoder in {summary['hf_dual_encoder']}" if hf else ""))
        return 0

    return run
