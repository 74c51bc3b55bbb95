"""The ``littune`` command line: a thin layer that parses arguments and calls the Python API."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

COMMANDS: dict[str, Callable[[argparse.ArgumentParser], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help: str):
    """Register a sub-command: the function adds its arguments and returns its runner."""
    def deco(fn):
        COMMANDS[name] = (fn, help)
        return fn
    return deco


@command("towers", "list the registered image and text towers")
def _towers(p: argparse.ArgumentParser):
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def run(a: argparse.Namespace) -> int:
        from .towers import list_image_towers, list_text_towers
        from .towers.describe import describe_registered, format_preprocess

        data = describe_registered(list_image_towers(), list_text_towers())
        if a.json:
            print(json.dumps(data, indent=2))
            return 0
        for kind in ("image", "text"):
            print(f"{kind} towers:")
            for t in data[kind]:
                print(f"  {t['name']:<20} {str(t.get('embed_dim', '')):<22} {t['description']}")
                if t.get("preprocess"):
                    print(f"  {'':<20} preprocess: {format_preprocess(t['preprocess'])}")
        return 0

    return run


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    from . import commands  # noqa: F401  (registers the other sub-commands)

    parser = argparse.ArgumentParser(prog="littune", description="LiT: Locked-image Text tuning")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    runners = {}
    for name, (fn, help_) in COMMANDS.items():
        runners[name] = fn(sub.add_parser(name, help=help_, description=help_))
    return parser, runners


def main(argv: list[str] | None = None) -> int:
    parser, runners = build_parser()
    args = parser.parse_args(argv)
    from .data.images import BadImage

    try:
        return runners[args.command](args) or 0
    except (ValueError, KeyError, FileNotFoundError, FileExistsError, BadImage) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"littune {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # `python -m littune.cli`: use the package's module, where commands register
    from littune.cli import main as package_main

    sys.exit(package_main())
