"""The ``littune`` command line: a thin layer that parses arguments and calls the Python API."""
from __future__ import annotations

import argparse
import sys


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    from .commands import COMMANDS
    from .commands.base import HelpFormatter

    parser = argparse.ArgumentParser(prog="littune", description="LiT: Locked-image Text tuning",
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action=_Version, help="print littune's version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    runners = {}
    for entry in COMMANDS.list():
        runners[entry.name] = entry.factory(sub.add_parser(entry.name, help=entry.description,
                                                            description=entry.description,
                                                            formatter_class=HelpFormatter))
    return parser, runners


class _Version(argparse.Action):
    """``--version``: the installed distribution's version (read only when asked for)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("littune")
        except PackageNotFoundError:  # run from a source tree that was never installed
            v = "unknown (not installed)"
        print(f"littune {v}")
        parser.exit()


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
