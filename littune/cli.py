"""The ``littune`` command line: a thin layer that parses arguments and calls the Python API."""
from __future__ import annotations

import argparse
import sys


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    from .commands import COMMANDS

    parser = argparse.ArgumentParser(prog="littune", description="LiT: Locked-image Text tuning")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    runners = {}
    for entry in COMMANDS.list():
        runners[entry.name] = entry.factory(sub.add_parser(entry.name, help=entry.description,
                                                            description=entry.description))
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


if __name__ == "__main__":
    sys.exit(main())
