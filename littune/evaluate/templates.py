"""Prompt template sets for zero-shot classification.

A template is a sentence with ``{}`` where the class name goes, e.g.
``"a photo of a {}."``. Averaging the text embeddings of several templates
(prompt ensembling, CLIP arXiv 2103.00020 Sec. 3.1.4; used by LiT arXiv
2111.07991) usually beats a single prompt.

Built-in sets live in ``littune/resources/templates/NAME.txt``: one template
per line, blank lines and lines starting with ``#`` ignored. The same format
is accepted from any file path. Sets combine with ``+`` or ``,``
(``flowers+simple``, ``simple,my_prompts.txt``); a template found in two of
them is kept once, where it first appears.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

__all__ = ["get_templates", "list_template_sets", "read_template_file"]


def _builtin_dir():
    # importlib.resources works for editable installs, wheels and zips alike.
    return resources.files("littune").joinpath("resources", "templates")


def list_template_sets() -> list[str]:
    """Names of the built-in template sets (file stems), sorted."""
    return sorted(p.name[: -len(".txt")] for p in _builtin_dir().iterdir() if p.name.endswith(".txt"))


def _parse_lines(text: str, source: str) -> list[str]:
    templates: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "{}" not in line:
            raise ValueError(f"{source}:{lineno}: template has no '{{}}' placeholder: {line!r}")
        if line.count("{}") > 1:
            raise ValueError(f"{source}:{lineno}: template has {line.count('{}')} '{{}}' placeholders; "
                             f"give exactly one: {line!r}")
        templates.append(line)
    if not templates:
        raise ValueError(f"{source}: no templates found (only blank or '#' comment lines)")
    return templates


def read_template_file(path: str | os.PathLike) -> list[str]:
    """Read templates from a text file, one per line (see module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"template file not found: {path}")
    return _parse_lines(path.read_text(encoding="utf-8"), str(path))


def _one_set(name: str) -> list[str]:
    if name in list_template_sets():
        res = _builtin_dir().joinpath(f"{name}.txt")
        return _parse_lines(res.read_text(encoding="utf-8"), f"<built-in template set {name!r}>")
    if Path(name).is_file():
        return read_template_file(name)
    raise ValueError(
        f"unknown template set {name!r}: not a built-in name ({', '.join(list_template_sets())}) "
        f"and not an existing file"
    )


def get_templates(name_or_path: str | os.PathLike) -> list[str]:
    """Return a template list by built-in name (see :func:`list_template_sets`), file path, or
    several of them joined with ``+`` or ``,`` (identical templates kept once, in first-seen order).

    A built-in name wins over a same-named file in the working directory; pass
    ``./name`` to force the file. A file whose own name holds ``+`` or ``,`` is read whole.
    """
    spec = os.fspath(name_or_path)
    if spec in list_template_sets() or Path(spec).is_file():
        parts = [spec]
    else:
        parts = [p.strip() for p in re.split(r"[+,]", spec)]
        if len(parts) > 1 and not all(parts):
            raise ValueError(f"template sets {spec!r}: empty entry; join names or files with '+' "
                             "(e.g. 'flowers+simple')")
    return list(dict.fromkeys(t for part in parts for t in _one_set(part)))
