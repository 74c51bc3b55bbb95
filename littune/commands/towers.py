"""``littune towers``: the registered image and text towers, their embedding sizes and preprocessing."""
from __future__ import annotations

import argparse
import json

from .base import add_json, command


@command("towers", "list the registered image and text towers")
def _towers(p: argparse.ArgumentParser):
    add_json(p, "the towers (image and text lists of name, embed_dim, description, preprocess; "
                "image_composites: the config keys that join them)")

    def run(a: argparse.Namespace) -> int:
        from ..towers import list_image_towers, list_text_towers
        from ..towers.describe import describe_registered, format_preprocess

        data = describe_registered(list_image_towers(), list_text_towers())
        if a.json:
            print(json.dumps(data, indent=2))
            return 0
        for kind in ("image", "text"):
            if kind == "text":
                print("image towers made of the above (lock L; their features are cached as one tower's):")
                for c in data["image_composites"]:
                    print(f"  {c['key']}: {c['example']}")
                    print(f"      {c['description']}; features: {c['embed_dim']}")
            print(f"{kind} towers:")
            for t in data[kind]:
                print(f"  {t['name']:<20} {str(t.get('embed_dim', '')):<22} {t['description']}")
                if t.get("preprocess"):
                    print(f"  {'':<20} preprocess: {format_preprocess(t['preprocess'])}")
                if t.get("package"):
                    print(f"  {'':<20} package: {t['package']}; licence: {t['licence']}; size: {t['size']}")
        return 0

    return run
