"""The documentation site builds with ``mkdocs build --strict`` (no broken link or anchor, no page
outside the nav), and its generated pages hold every CLI option and config key."""
from __future__ import annotations

import logging
import re

import pytest

from tests.ci import need_module
from tests.docs.hooks import DOCS, REPO, reference


def test_site_builds_strictly(tmp_path, monkeypatch):
    """In this process (no second torch import): MkDocs' own strict build, its warnings in the message."""
    need_module("mkdocs", "pip install -e '.[docs]' (make test installs the docs extra)")
    need_module("mkdocstrings", "pip install -e '.[docs]' (make test installs the docs extra)")
    from mkdocs.commands.build import build
    from mkdocs.config import load_config
    from mkdocs.exceptions import Abort

    monkeypatch.chdir(REPO)
    monkeypatch.setenv("NO_MKDOCS_2_WARNING", "1")
    warnings: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())
    logging.getLogger("mkdocs").addHandler(handler)
    try:
        build(load_config(str(REPO / "mkdocs.yml"), strict=True, site_dir=str(tmp_path / "site")))
    except Abort as e:
        pytest.fail(f"{e}: " + " | ".join(warnings))
    finally:
        logging.getLogger("mkdocs").removeHandler(handler)
    site = tmp_path / "site"
    cli = (site / "cli_reference" / "index.html").read_text()
    assert 'id="littune-eval-zeroshot"' in cli and "--faiss-threshold" in cli  # generated, nested commands too
    assert "model.text.lora_rank" in (site / "config_reference" / "index.html").read_text()
    assert 'id="littune.infer.model.LiT.classify"' in (site / "inference" / "index.html").read_text()  # mkdocstrings
    assert "<!-- littune:" not in "".join(p.read_text() for p in site.rglob("*.html"))  # every marker replaced


def test_every_page_is_in_the_nav_and_every_nav_entry_exists():
    nav = re.findall(r":\s*([\w/.-]+\.md)\s*$", (REPO / "mkdocs.yml").read_text(), flags=re.M)
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if "hooks" not in p.parts)
    assert sorted(nav) == pages


def test_cli_reference_lists_every_command_and_option():
    ref = reference()
    text = ref.cli_reference()
    sections = re.split(r"^#+ `(littune[^`]*)`$", text, flags=re.M)
    by_name = dict(zip(sections[1::2], sections[2::2]))
    options = ref.cli_options()
    assert {"littune eval zeroshot", "littune cache verify", "littune serve", "littune train"} <= set(options)
    for command, flags in options.items():
        assert command in by_name, f"{command} has no section"
        for flag in flags:
            if flag not in ("-h", "--help"):
                assert f"`{flag}`" in by_name[command], f"{command} {flag} missing from the reference"
    assert "| `--views` `VIEWS` | augmented views per image besides the plain one (0: the plain view only) | `0` |" in by_name["littune embed"]


def test_config_reference_lists_every_key_with_its_default_and_comment():
    ref = reference()
    text = ref.config_reference()
    keys = ref.config_keys()
    assert {"train.mixup", "model.image.crop_pct", "model.text.lora_targets", "data.engine", "evals"} <= set(keys)
    for key in keys:
        assert f"| `{key}` |" in text, key
    row = next(line for line in text.splitlines() if line.startswith("| `train.mixup` |"))
    assert "`0.0`" in row and "FuseMix" in row
    row = next(line for line in text.splitlines() if line.startswith("| `model.text.lora_targets` |"))
    assert "intermediate.dense" in row  # a comment continued on the next line stays with its field
    row = next(line for line in text.splitlines() if line.startswith("| `model.text.tokenizer` |"))
    assert row.count("scratch only") == 1 and "intermediate.dense" not in row


@pytest.mark.parametrize("png", sorted(p.name for p in DOCS.glob("*.png")))
def test_every_picture_is_shown_on_a_page_and_small(png):
    assert (DOCS / png).stat().st_size < 200_000, f"docs/{png} is over 200 KB"
    pages = "".join(p.read_text() for p in DOCS.glob("*.md"))
    assert f"]({png})" in pages, f"docs/{png} is shown on no page"


def test_readme_is_short():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 200
    assert lines.index("make demo   # install into .venv, then embed, LiT-train and evaluate on Flickr8k + TF-flowers") < 25
