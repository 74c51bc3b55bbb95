"""`littune towers`: the registered towers, as JSON and as a table, in-process and as a real command."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from littune.cli import main
from littune.towers import create_image_tower

REPO = Path(__file__).resolve().parents[1]


def _check_listing(data: dict) -> None:
    image = {t["name"]: t for t in data["image"]}
    text = {t["name"]: t for t in data["text"]}
    assert {"timm:*", "hf:*", "efficientnet_lite0"} <= set(image)
    assert {"scratch", "hf:*", "minilm"} <= set(text)
    assert image["efficientnet_lite0"]["embed_dim"] == 1280
    assert image["timm:*"]["embed_dim"] and image["hf:*"]["embed_dim"]
    assert text["minilm"]["embed_dim"] == 384
    assert text["scratch"]["embed_dim"] and text["hf:*"]["embed_dim"]
    for t in data["image"] + data["text"]:
        assert t["description"]


def test_towers_json(capsys):
    assert main(["towers", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    _check_listing(data)
    # The packaged default's preprocessing is exactly what the tower itself uses.
    lite = {t["name"]: t for t in data["image"]}["efficientnet_lite0"]
    assert lite["preprocess"] == create_image_tower("efficientnet_lite0", pretrained=False).preprocess.to_dict()


def test_towers_table(capsys):
    assert main(["towers"]) == 0
    out = capsys.readouterr().out
    assert out.index("image towers:") < out.index("text towers:")
    for name in ("timm:*", "hf:*", "efficientnet_lite0", "scratch", "minilm"):
        assert f"  {name} " in out
    assert "1280" in out and "384" in out
    assert "preprocess: 224px, shortest, crop 0.875, bicubic, mean (0.5, 0.5, 0.5)" in out
    # the composite image towers are listed by their config keys, between the image and the text towers
    made = out.index("image towers made of the above")
    assert out.index("efficientnet_lite2") < made < out.index("text towers:")
    assert "model.image.concat: [{name: efficientnet_lite2, weight: 1.0}]" in out
    assert "model.image.averaged_views: [shortest, squash, border]" in out


def test_every_composite_key_listed_is_a_config_key():
    from littune.config import load_config
    from littune.towers.describe import COMPOSITES

    for c in COMPOSITES:
        field = c["key"].rsplit(".", 1)[1]
        image = load_config(None, [f"{c['key']}={c['example']}"]).model.image
        assert getattr(image, field), c["key"]


def test_unknown_command_and_option_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["no-such-command"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["towers", "--bogus"])
    assert e.value.code == 2


def test_towers_json_as_a_real_command():
    script = Path(sys.executable).parent / "littune"
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "littune.cli"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    res = subprocess.run([*cmd, "towers", "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    _check_listing(json.loads(res.stdout))


def test_the_towers_page_shows_what_littune_towers_prints(capsys):
    assert main(["towers"]) == 0
    out = capsys.readouterr().out
    page = (REPO / "docs" / "towers.md").read_text()
    start = page.index("$ littune towers\n") + len("$ littune towers\n")
    assert page[start:page.index("```", start)] == out
