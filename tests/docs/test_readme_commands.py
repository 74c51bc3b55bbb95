"""Every command in the README's code blocks (and the quickstart pages') still works.

Quick commands run for real on a tiny trained model and a folder of its images, with the README's
paths replaced by theirs (classify, index, search, export, towers, and the Python block). Long ones
are checked as far as they can be without running: `littune train` loads its config and overrides
(`--print-config`: a renamed key or a wrong type fails), other littune commands and torchrun's
options go through their own parsers, pip's options through pip's, and make targets must exist.
A command that matches no rule fails, so a new kind of command gets a rule here.
"""
from __future__ import annotations

import re
import shlex
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.docs.hooks import DOCS, REPO
from tests.infer.tiny_lit import photo_folder

pytestmark = pytest.mark.xdist_group("readme_commands")  # in order on one worker: index before search

DOCUMENTS = [REPO / "README.md", DOCS / "demo.md", DOCS / "install.md"]
QUICK = {"classify", "index", "search", "export", "towers"}
FLOWER = "../shared/data/flowers/test/roses/10090824183_d02c613f10_m.jpg"


def code_blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def shell_commands(path: Path) -> list[str]:
    """Each command of each bash block: continuation lines joined, `a && b` split, comments dropped."""
    out = []
    for block in code_blocks(path, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words:
                    out.append(shlex.join(words))
    return out


CASES = [(p.name, c) for p in DOCUMENTS for c in shell_commands(p)]


@pytest.fixture(scope="module")
def workspace(tiny_lit_run, tmp_path_factory) -> dict:
    """The README's paths -> the tiny run's: its run folder, one of its images, a folder of them; the
    README's flower labels -> colours the tiny run's tokenizer knows (unknown words all read as [UNK],
    which the prompt-identity check rightly refuses)."""
    root = tmp_path_factory.mktemp("readme")
    photos = photo_folder(tiny_lit_run, root / "photos", 8)
    return {"runs/demo/latest": str(tiny_lit_run["run"]), FLOWER: str(tiny_lit_run["images"][0]),
            "../shared/data/flowers/test": str(photos), "flowers.index": str(root / "flowers.index"),
            "exports/demo": str(root / "exports" / "demo"),
            "daisy,dandelion,rose,sunflower,tulip": "red,green,blue,yellow,black",
            '["daisy", "dandelion", "rose", "sunflower", "tulip"]': '["red", "green", "blue", "yellow", "black"]'}


def substitute(text: str, paths: dict) -> str:
    for old in sorted(paths, key=len, reverse=True):  # the image path before its folder
        text = text.replace(old, paths[old])
    return text


def littune_argv(words: list[str]) -> list[str] | None:
    """The arguments after `littune` in `littune ...`, `python -m littune ...` or `torchrun ... -m littune ...`."""
    if words[0] == "littune":
        return words[1:]
    if words[0] in ("python", "python3") and words[1:3] == ["-m", "littune"]:
        return words[3:]
    if words[0] == "torchrun":
        from torch.distributed.run import get_args_parser

        args = get_args_parser().parse_args(words[1:])
        assert args.module and args.training_script == "littune", words
        return list(args.training_script_args)
    return None


def check_pip(words: list[str]) -> None:
    from pip._internal.commands import create_command

    assert words[1] == "install", words
    options, packages = create_command("install").parse_args(words[2:])
    for constraints in options.constraints:
        assert constraints.startswith("/etc/") or (REPO / constraints).is_file(), constraints
    extras = re.findall(r"^(\w+) = \[", (REPO / "pyproject.toml").read_text(), flags=re.M)
    for target in [*options.editables, *packages]:
        if target.startswith("."):
            for extra in re.findall(r"\[([\w,]+)\]", target)[:1]:
                assert set(extra.split(",")) <= set(extras), f"{target}: no such extra in pyproject.toml"
        else:
            assert version(target), target  # a package the README names is the one installed here


def check_make(target: str) -> None:
    makefile = (REPO / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", makefile, flags=re.M).group(1).split()
    assert target in phony and re.search(rf"^{re.escape(target)}:", makefile, flags=re.M), f"make {target}"


@pytest.mark.parametrize("doc,command", CASES, ids=[f"{d}: {c[:60]}" for d, c in CASES])
def test_command_works(doc, command, workspace, capsys):
    from littune.cli import build_parser, main

    words = shlex.split(command)
    argv = littune_argv(words)
    if argv is not None:
        name = argv[0]
        if "--help" in argv or "-h" in argv:
            with pytest.raises(SystemExit) as done:
                build_parser()[0].parse_args(argv)
            assert done.value.code == 0
        elif name in QUICK and "--format" not in argv:
            real = [substitute(w, workspace) for w in argv]
            if name == "export":
                real.append("--force")
            assert main(real) == 0, capsys.readouterr().err
        elif name == "train":
            assert main([*argv, "--print-config"]) == 0, capsys.readouterr().err
        else:
            build_parser()[0].parse_args(argv)  # SystemExit (exit 2, the option named) on a bad option
        for word in argv:
            if re.match(r"^(configs|littune)/.*\.ya?ml$", word):
                assert (REPO / word).is_file(), word
    elif words[0] == "make":
        check_make(words[1])
    elif words[0] == "pip":
        check_pip(words)
    elif words[:3] in (["python3", "-m", "venv"], ["python", "-m", "venv"]) or words[0] in (".", "source"):
        pass  # creating and entering a virtual environment
    else:
        pytest.fail(f"{doc}: no rule checks `{command}` (add one to {Path(__file__).name})")


def test_readme_python_block_runs(workspace, capsys):
    blocks = code_blocks(REPO / "README.md", "python")
    assert len(blocks) == 1
    exec(compile(substitute(blocks[0], workspace), "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("[{") and len(out) == 1 + 5  # the ranked labels, then five search hits
    assert all(re.match(r"^\d\.\d{3} /", line) for line in out[1:])
