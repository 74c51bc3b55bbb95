"""The ``littune`` command line: a thin layer that parses arguments and calls the Python API.

It is also the one error boundary: an expected failure (a bad config value, a damaged or missing
file, a full or read-only disk, a non-finite loss, a refused resume, a lost peer process) prints
one or two lines naming the file or key and the fix, and exits with code 2. ``--debug`` (or
``LITTUNE_DEBUG=1``) prints the traceback as well. Anything else is a bug: its traceback is shown.
"""
from __future__ import annotations

import argparse
import errno
import os
import pickle
import sys
import traceback

# What an OS error means for the user, by errno: the fix to print after the message.
_OS_FIXES = {
    errno.ENOSPC: "the disk is full: free some space (or write elsewhere) and run the command again",
    errno.EDQUOT: "the disk quota is used up: free some space (or write elsewhere) and run the command again",
    errno.EROFS: "the file system is read-only: write to another folder",
    errno.EACCES: "fix the permissions or use another path",
    errno.EPERM: "fix the permissions or use another path",
    errno.ENOENT: "check the path",
    errno.EISDIR: "a folder was given where a file is needed",
    errno.ENOTDIR: "a file was given where a folder is needed",
    errno.EFBIG: "the file grew past the size this process may write (ulimit -f): raise the limit",
}


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    from .commands import COMMANDS
    from .commands.base import HelpFormatter

    parser = argparse.ArgumentParser(prog="littune", description="LiT: Locked-image Text tuning",
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action=_Version, help="print littune's version and exit")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also LITTUNE_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    runners = {}
    for entry in COMMANDS.list():
        sp = sub.add_parser(entry.name, help=entry.description, description=entry.description,
                            epilog=entry.info.get("epilog") or None, formatter_class=HelpFormatter)
        # also after the command (`littune train ... --debug`); SUPPRESS keeps the global one when absent
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        runners[entry.name] = entry.factory(sp)
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


def _expected() -> tuple[type[BaseException], ...]:
    """Exception types that are the user's situation, not littune's bug."""
    from .data.images import BadImage

    types: list[type[BaseException]] = [ValueError, KeyError, OSError, FloatingPointError, BadImage, EOFError,
                                        pickle.UnpicklingError]
    try:
        from safetensors import SafetensorError

        types.append(SafetensorError)
    except ImportError:  # pragma: no cover - older safetensors
        pass
    dist_error = _dist_error()
    if dist_error is not None:  # a peer process died or timed out (gloo / NCCL / the store)
        types.append(dist_error)
    return tuple(types)


def _dist_error() -> type[BaseException] | None:
    """torch.distributed's error type, if torch is loaded at all (no torch, no collective failed:
    an error in a command that never imports torch does not wait for it)."""
    dist = sys.modules.get("torch.distributed")
    return getattr(dist, "DistError", None)


def describe(e: BaseException) -> str:
    """The one or two lines the user sees for an expected failure."""
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    if isinstance(e, OSError) and e.errno is not None and e.strerror:
        where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f)
        fix = _OS_FIXES.get(e.errno)
        return f"{e.strerror}{': ' + where if where else ''}" + (f"\n  {fix}" if fix else "")
    text = str(e).strip() or type(e).__name__
    dist_error = _dist_error()
    if dist_error is not None and isinstance(e, dist_error):  # the rendezvous store, a collective
        return (f"lost contact with another process of this run ({text.splitlines()[0][:300]})\n  a process "
                "or node stopped or hung: start every one again (with --resume where it trains)")
    return text


def debug_wanted(args: argparse.Namespace | None) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get("LITTUNE_DEBUG", "") not in ("", "0")


# A reader that closed the pipe (`littune eval ... | head`) ends the output, not the command in
# error: the exit code a process stopped by SIGPIPE has in a shell, and nothing on stderr.
EXIT_CLOSED_PIPE = 128 + 13


def _closed_pipe() -> int:
    try:  # the interpreter flushes stdout at exit: point it at /dev/null so that flush cannot fail
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # pragma: no cover - stdout without a file descriptor
        pass
    return EXIT_CLOSED_PIPE


def main(argv: list[str] | None = None) -> int:
    parser, runners = build_parser()
    args = parser.parse_args(argv)
    try:
        code = runners[args.command](args) or 0
        sys.stdout.flush()  # here, so a reader gone meanwhile is noticed below, not at interpreter exit
        return code
    except BrokenPipeError:
        return _closed_pipe()
    except _expected() as e:
        if debug_wanted(args):
            traceback.print_exc()
        print(f"littune {args.command}: error: {describe(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
