"""Every flag explained: help text and defaults for every option of every command, ``--version``, and
help that answers without importing torch (start-up time itself is measured in
benchmarks/bench_startup.py, never asserted here)."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from littune.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "timm", "transformers", "torchvision", "numpy", "fastapi", "sklearn", "matplotlib")


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """'embed' -> its parser, 'eval zeroshot' -> the sub-sub-command's, and so on."""
    parser, _ = build_parser()
    out, todo = {}, [("", parser)]
    while todo:
        prefix, p = todo.pop()
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    todo.append((f"{prefix} {name}".strip(), sub))
        if prefix:
            out[prefix] = p
    return out


def _options(p: argparse.ArgumentParser):
    return [a for a in p._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def test_every_option_of_every_command_has_help_and_shows_its_default():
    parsers = _parsers()
    assert {"embed", "train", "eval zeroshot", "eval retrieval", "eval probe", "classify", "index", "search",
            "serve", "export", "study", "demo", "towers"} <= set(parsers)
    for name, p in parsers.items():
        assert p.description, f"littune {name} has no description"
        formatter = p._get_formatter()
        for a in _options(p):
            text = formatter._expand_help(a) if a.help else ""
            where = f"littune {name} {a.option_strings[-1]}"
            assert text.strip(), f"{where} has no help text"
            if isinstance(a, (argparse._StoreTrueAction, argparse._StoreFalseAction)) or a.required:
                continue
            if a.default is None:  # nothing to show: the help must say what happens without it
                assert "default" in text, f"{where}: its help does not say what the default does: {text!r}"
            else:
                assert f"default: {a.default}" in text or str(a.default) in text, f"{where}: default not shown: {text!r}"
        for a in (x for x in p._actions if not x.option_strings):
            if not isinstance(a, argparse._SubParsersAction):
                assert a.help, f"littune {name} {a.dest} has no help text"


def test_the_flags_the_issue_named_show_their_defaults(capsys):
    def helptext(*cmd: str) -> str:
        with pytest.raises(SystemExit) as e:
            main([*cmd, "--help"])
        assert e.value.code == 0
        return " ".join(capsys.readouterr().out.split())  # argparse wraps lines

    assert "port to listen on (default: 8000)" in helptext("serve")
    embed = helptext("embed")
    for flag, default in (("--dtype", "float16"), ("--shard-size", "10000"), ("--batch-size", "64"),
                          ("--image-col", "image"), ("--caption-col", "caption"), ("--device", "auto")):
        assert flag in embed and f"(default: {default})" in embed, flag
    zs = helptext("eval", "zeroshot")
    assert "(default: simple)" in zs and "flowers" in zs and "clip_imagenet" in zs  # the built-in template sets
    assert "$LITTUNE_CACHE_DIR" in zs and "--device" in zs
    for cmd in (("classify",), ("index",), ("search",), ("serve",), ("eval", "retrieval"), ("eval", "probe")):
        assert "--device" in helptext(*cmd) and "(default: auto)" in helptext(*cmd), cmd
    assert "--no-progress" in helptext("train") and "--json" in helptext("train")


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"littune {version('littune')}\n"


@pytest.mark.parametrize("argv", [["--help"], ["towers", "--json"], ["classify", "--help"], ["embed", "--help"],
                                  ["eval", "zeroshot", "--help"], ["serve", "--help"], ["index", "--help"]])
def test_help_and_towers_import_nothing_heavy(argv):
    """``--help`` and ``towers`` answer from the parser and the tower catalog alone: no torch."""
    code = ("import sys\nfrom littune.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code, *argv], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "HEAVY []"
    if argv[0] == "towers":
        listing = json.loads("\n".join(r.stdout.splitlines()[:-1]))
        assert {t["name"] for t in listing["image"]} >= {"efficientnet_lite0", "timm:*", "hf:*"}
