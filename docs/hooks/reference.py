"""MkDocs hook: the CLI and config reference pages, generated at build time so they cannot drift.

A page holding ``<!-- littune:cli -->`` gets every sub-command and option of ``littune`` from the
argparse parser itself (``littune.cli.build_parser``); ``<!-- littune:config -->`` gets every key of
an experiment config with its type, default and the comment beside it in the dataclass
(``littune.config.experiment.ExperimentConfig`` and the configs it nests). tests/docs/ checks that
each option and key appears.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import re
import tokenize
import typing

CLI_MARK = "<!-- littune:cli -->"
CONFIG_MARK = "<!-- littune:config -->"
COMMANDS_MARK = "<!-- littune:commands -->"


def _cell(text: object) -> str:
    """A value safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


# --- the command line --------------------------------------------------------------------------------

def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _option_row(parser: argparse.ArgumentParser, action: argparse.Action) -> str | None:
    if action.help == argparse.SUPPRESS or isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
        return None
    names = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{action.metavar or action.dest}`"
    if action.option_strings and action.nargs != 0:
        metavar = action.metavar or ("{" + ",".join(map(str, action.choices)) + "}" if action.choices
                                     else action.dest.upper())
        names += f" `{metavar}`"
    text = action.help or ""
    if "%(" in text:
        params = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
        params["prog"] = parser.prog
        text = text % params
    default = action.default
    # identity, not equality: a default of 0 is shown, False (a flag's) is not
    shown = ("" if default is None or default is False or default is argparse.SUPPRESS or action.nargs == 0
             or not action.option_strings else f"`{default}`")
    return f"| {_cell(names)} | {_cell(text)} | {_cell(shown)} |"


def _parser_section(name: str, parser: argparse.ArgumentParser, level: int) -> list[str]:
    lines = [f"{'#' * level} `{name}`", ""]
    if parser.description:
        lines += [parser.description.strip(), ""]
    usage = parser.format_usage().strip().removeprefix("usage: ")
    lines += ["```", usage, "```", ""]
    rows = [r for r in (_option_row(parser, a) for a in parser._actions) if r]
    if rows:
        lines += ["| argument | what it does | default |", "|---|---|---|", *rows, ""]
    for sub_name, sub in _subparsers(parser).items():
        lines += _parser_section(f"{name} {sub_name}", sub, level + 1)
    return lines


def cli_reference() -> str:
    """Markdown for every sub-command of ``littune``, in the parser's order, nested ones included."""
    from littune.cli import build_parser

    parser, _ = build_parser()
    lines = _parser_section("littune", parser, 2)
    return "\n".join(lines)


def commands_table() -> str:
    """Markdown: one row per sub-command (nested ones included), linked to its reference section."""
    from littune.cli import build_parser

    rows = ["| command | what it does |", "|---|---|"]

    def walk(name: str, p: argparse.ArgumentParser) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {c.dest: c.help for c in action._choices_actions}
                for sub_name, sub in action.choices.items():
                    path = f"{name} {sub_name}"
                    anchor = path.replace(" ", "-")
                    if not _subparsers(sub):
                        rows.append(f"| [`{path}`](cli_reference.md#{anchor}) | {_cell(helps.get(sub_name, ''))} |")
                    walk(path, sub)

    walk("littune", build_parser()[0])
    return "\n".join(rows)


def cli_options() -> dict[str, list[str]]:
    """Every command path (``littune eval zeroshot``) and its option strings: what the page must hold."""
    from littune.cli import build_parser

    out: dict[str, list[str]] = {}

    def walk(name: str, p: argparse.ArgumentParser) -> None:
        out[name] = [s for a in p._actions if a.help != argparse.SUPPRESS for s in a.option_strings]
        for sub_name, sub in _subparsers(p).items():
            walk(f"{name} {sub_name}", sub)

    walk("littune", build_parser()[0])
    return out


# --- the config dataclasses --------------------------------------------------------------------------

def _field_comments(cls: type) -> dict[str, str]:
    """The comment on each field's line and the comment lines right above it, from the class source.

    A comment line right after a field whose own comment ends with a comma continues that comment
    (``lora_targets``' list runs onto the next line)."""
    source = inspect.getsource(cls)
    inline_at = {t.start[0]: t.string[1:].strip() for t in tokenize.generate_tokens(io.StringIO(source).readline)
                 if t.type == tokenize.COMMENT}
    comments: dict[str, str] = {}
    above: list[str] = []
    last: str | None = None  # the field a trailing comma leaves open
    for row, line in enumerate(source.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("#"):
            if last is not None:
                comments[last] += " " + stripped[1:].strip()
                last = None if not comments[last].endswith(",") else last
            else:
                above.append(stripped[1:].strip())
            continue
        match = re.match(r"    (\w+)\s*:[^=]*(=.*)?$", line.split("  #")[0])
        last = None
        if match:
            inline = inline_at.get(row, "")
            comments[match.group(1)] = " ".join(above + ([inline] if inline else []))
            last = match.group(1) if inline.endswith(",") else None
        above = []
    return comments


def _type_name(tp: object) -> str:
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return re.sub(r"(?:\w+\.)+(\w+)", r"\1", str(tp)).replace("NoneType", "None")  # List[ImageMemberConfig]


def _list_item(tp: object) -> type | None:
    """The dataclass a ``List[...]`` field holds (None: not a list of configs)."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) is list and args and dataclasses.is_dataclass(args[0]):
        return args[0]
    return None


def _config_rows(cls: type, prefix: str) -> tuple[list[str], list[tuple[str, type]]]:
    hints = typing.get_type_hints(cls)
    comments = _field_comments(cls)
    rows, nested = [], []
    for f in dataclasses.fields(cls):
        tp = hints.get(f.name, f.type)
        if dataclasses.is_dataclass(tp):
            nested.append((f"{prefix}{f.name}", tp))
            continue
        item = _list_item(tp)
        if item is not None:  # a list of configs (model.image.concat): its row, then its item's keys
            nested.append((f"{prefix}{f.name}[]", item))
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = "(required)"
        rows.append(f"| `{prefix}{f.name}` | `{_cell(_type_name(tp))}` | `{_cell(repr(default))}` | "
                    f"{_cell(comments.get(f.name, ''))} |")
    return rows, nested


def config_reference() -> str:
    """Markdown: one table per config section (``model.image``, ``train``, ...), every key once."""
    from littune.config.experiment import ExperimentConfig

    lines: list[str] = []
    queue: list[tuple[str, type]] = [("", ExperimentConfig)]
    while queue:
        prefix, cls = queue.pop(0)
        rows, nested = _config_rows(cls, f"{prefix}." if prefix else "")
        title = f"`{prefix}`" if prefix else "top level"
        lines += [f"### {title} ({cls.__name__})", "", "| key | type | default | meaning |", "|---|---|---|---|",
                  *rows, ""]
        queue += nested
    return "\n".join(lines)


def config_keys() -> list[str]:
    """Every dotted key of an experiment config (what the page must hold)."""
    from littune.config.experiment import ExperimentConfig

    keys: list[str] = []

    def walk(cls: type, prefix: str) -> None:
        for f in dataclasses.fields(cls):
            tp = typing.get_type_hints(cls).get(f.name, f.type)
            if dataclasses.is_dataclass(tp):
                walk(tp, f"{prefix}{f.name}.")
            else:
                keys.append(prefix + f.name)
                if _list_item(tp) is not None:
                    walk(_list_item(tp), f"{prefix}{f.name}[].")

    walk(ExperimentConfig, "")
    return keys


def on_page_markdown(markdown: str, page, config, files) -> str:  # MkDocs hook
    if CLI_MARK in markdown:
        markdown = markdown.replace(CLI_MARK, cli_reference())
    if COMMANDS_MARK in markdown:
        markdown = markdown.replace(COMMANDS_MARK, commands_table())
    if CONFIG_MARK in markdown:
        markdown = markdown.replace(CONFIG_MARK, config_reference())
    return markdown
