"""The sub-command registry: ``@command(name, help)`` on a function that adds its arguments to a
parser and returns its runner (``args -> exit code``). ``cli.py`` builds the parser from it.

The flags several commands share (``--model``, ``--json``, ``--no-progress``, ``--device``,
``--cache``) are worded once here, and every option's help shows its default. Command modules
import nothing heavy at the top: ``littune --help`` must not wait for torch.

Output rule, the same for every command: a human-readable answer on stdout (a table, or one summary
line for the long jobs embed, index and train); ``--json`` prints one JSON document on stdout and
nothing else. Progress bars and warnings go to stderr; commands that run a long job draw bars
unless ``--no-progress``, the others (classify, search, serve, export, towers) never do.
"""
from __future__ import annotations

import argparse
import math
import sys
import warnings
from typing import Callable

from ..registry import Registry

Runner = Callable[[argparse.Namespace], int]
COMMANDS: Registry[Callable[[argparse.ArgumentParser], Runner]] = Registry("command")

CACHE_ENV = "LITTUNE_CACHE_DIR"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option's help ends with its default, unless the help already names it or there is none
    (a flag, or a default of None that the help explains in words). Descriptions and epilogs are
    printed as written (an epilog's lines are its layout)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or "default" in text or action.default is None
                or action.default is argparse.SUPPRESS  # identity: a default of 0 is shown
                or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))):
            return text
        return f"{text} (default: %(default)s)"


class Number:
    """An option's type and range, declared once where the option is: ``type=Number(int, 1, 65536)``.

    ``low``/``high`` are inclusive ends (None: none); ``above`` an exclusive lower end. Anything
    else (not a number, NaN, infinite, outside the range) is refused by argparse with one line naming
    the option and what it accepts (exit 2), before the command runs. tests/test_option_ranges.py
    refuses a numeric option declared without one.
    """

    def __init__(self, kind: type, low: float | None = None, high: float | None = None, *,
                 above: float | None = None):
        self.kind, self.low, self.high, self.above = kind, low, high, above
        self.__name__ = kind.__name__  # argparse names the type in some messages

    def accepts(self, value: float) -> bool:
        return (math.isfinite(value) and (self.low is None or value >= self.low)
                and (self.above is None or value > self.above) and (self.high is None or value <= self.high))

    def describe(self) -> str:
        what = "an integer" if self.kind is int else "a finite number"
        ends = [f">= {self.low:g}" if self.low is not None else "",
                f"> {self.above:g}" if self.above is not None else "",
                f"<= {self.high:g}" if self.high is not None else ""]
        return " ".join([what, " and ".join(e for e in ends if e)]).strip()

    def __call__(self, text: str):
        try:
            value = self.kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"{text!r} is not {self.describe()}") from None
        if not self.accepts(value):
            raise argparse.ArgumentTypeError(f"{text} is not allowed: give {self.describe()}")
        return value


def command(name: str, help: str, epilog: str = ""):
    """Register a sub-command: the function adds its arguments and returns its runner; ``epilog``
    ends its ``--help``."""
    def deco(add: Callable[[argparse.ArgumentParser], Runner]):
        def factory(p: argparse.ArgumentParser) -> Runner:
            run = add(p)

            def runner(a: argparse.Namespace) -> int:
                if getattr(a, "no_progress", True):  # no --no-progress flag: the command draws no bars
                    from ..progress import quiet_third_party_bars

                    quiet_third_party_bars()
                with warnings.catch_warnings():  # restores the default display afterwards
                    warnings.showwarning = _warning_line(name, warnings.showwarning)
                    return run(a)

            return runner

        COMMANDS.register(name, description=help, epilog=epilog)(factory)
        return add

    return deco


def _warning_line(name: str, default: Callable) -> Callable:
    """littune's own warnings as one line, ``littune CMD: warning: ...``; others as Python shows them."""
    def show(message, category, filename, lineno, file=None, line=None):
        if category.__module__.startswith("littune."):
            print(f"littune {name}: warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    return show


def add_model(p: argparse.ArgumentParser, required: bool = True, what: str = "") -> None:
    p.add_argument("--model", required=required, default=None, metavar="DIR",
                   help=what or "a run directory (littune train/demo, e.g. runs/demo/latest) "
                                "or a `littune export` folder")


def add_json(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--json", action="store_true", help=f"print {what} as one JSON document on stdout, and nothing else")


def add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true",
                   help="draw no progress bars (littune's, transformers' or huggingface_hub's)")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto",
                   help="auto (the GPU when CUDA is available, else the CPU) | cpu | cuda[:N]")


def add_class_prompts(p: argparse.ArgumentParser, when: str = "") -> None:
    """--classnames and --templates: the class names and prompt templates of zero-shot evaluation."""
    from ..evaluate.templates import list_template_sets  # a list of files: no torch

    p.add_argument("--classnames", default=None, metavar="FILE_OR_SET",
                   help=f"{when}file of 'folder,name' lines, or imagenet (CLIP's 1,000 names, for synset folders or "
                        "ImageNet-V2's 0..999) or imagenet_timm (timm's names) (default: the folder names; ImageNet "
                        "synset folders get CLIP's names)")
    p.add_argument("--templates", default="simple", metavar="SET_OR_FILE",
                   help=f"{when}prompt templates: a built-in set ({', '.join(list_template_sets())}) "
                        "or a file of lines with {}; combine several with '+' (flowers+simple)")


def add_cache(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", default=None, metavar="DIR",
                   help=f"root of the automatic embedding caches (default: ${CACHE_ENV}, else ~/.cache/littune)")
