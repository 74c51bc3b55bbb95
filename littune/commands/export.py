"""``littune export``: a self-contained model folder (safetensors, config, tokenizer; + transformers)."""
from __future__ import annotations

import argparse
import json

from .base import command


@command("export", "write a trained model as a self-contained folder (and a transformers model where possible)")
def _export(p: argparse.ArgumentParser):
    p.add_argument("--model", required=True, help="run directory (littune train/demo)")
    p.add_argument("--out", required=True, help="new folder for the export")
    p.add_argument("--no-hf", action="store_true", help="skip the transformers VisionTextDualEncoderModel folder")

    def run(a: argparse.Namespace) -> int:
        from ..infer import load
        from ..infer.export import export_model

        meta = export_model(load(a.model), a.out, hf=not a.no_hf)
        hf = meta["hf_dual_encoder"]
        print(json.dumps({"out": a.out, "embed_dim": meta["embed_dim"], "image": meta["image"]["name"],
                          "text": meta["text"]["name"],
                          "hf_dual_encoder": f"{a.out}/{hf}" if hf else None,
                          "hf_dual_encoder_skipped": meta["hf_dual_encoder_skipped"]}))
        return 0

    return run
