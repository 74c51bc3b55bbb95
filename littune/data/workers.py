"""How DataLoader workers start: from a fork server, not by forking the caller.

When a loader starts its workers the caller already runs threads of its own (torch's and
OpenVINO's pools, pyarrow's readers). Forking a process that runs threads copies their locks in
whatever state they hold: in the test suite the parent itself crashed (SIGSEGV in the interpreter,
while it joined its workers) in about every third run after the bf16 text-cache tests and a
pyarrow read, and never with a fork server. Python 3.14 made ``forkserver`` the POSIX default for
the same reason. The server is one small process per caller that imports torch, torchvision and
littune's decoding once (about 4 s, once); each worker is forked from it (about 0.1 s, like a plain
fork), without the caller's threads, and what it runs (the dataset, its transform, the collate
function) travels to it pickled.

A fork server re-imports the caller's main script in every worker, which runs a script's top level
again unless it sits under ``if __name__ == "__main__":``. For a script without that guard the
workers are forked as before, with a warning that says how to get the fork server.
"""
from __future__ import annotations

import ast
import multiprocessing
import sys
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

PRELOAD = ["torch", "torchvision", "littune.data.decode", "littune.towers.preprocess"]  # once, in the server


@lru_cache(maxsize=None)
def _unguarded_script(path: str) -> bool:
    """Whether the script at ``path`` runs code at its top level without an ``if __name__ ==
    "__main__":`` block (a script whose source cannot be read counts as guarded)."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return False

    def is_guard(node: ast.stmt) -> bool:
        test = ast.unparse(node.test) if isinstance(node, ast.If) else ""
        return "__name__" in test and "__main__" in test

    def is_definition(node: ast.stmt) -> bool:
        if isinstance(node, ast.Expr):  # docstrings and other bare constants; sys.path set-up before imports
            return isinstance(node.value, ast.Constant) or _sets_path(node.value)
        return isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
                                 ast.Assign, ast.AnnAssign))

    body = [n for n in tree.body if not is_guard(n)]
    return any(not is_definition(n) or _calls(n) for n in body)


def _sets_path(value: ast.expr) -> bool:
    """``sys.path.insert(...)`` / ``sys.path.append(...)``: a script making its own modules importable."""
    return isinstance(value, ast.Call) and ast.unparse(value.func) in ("sys.path.insert", "sys.path.append")


def _calls(node: ast.stmt) -> bool:
    """An assignment whose value calls something (``x = train(...)``) runs code at import; imports,
    definitions and constants do not count."""
    if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
        return False
    return any(isinstance(n, ast.Call) for n in ast.walk(node.value))


def _main_script() -> str | None:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return path if path and str(path).endswith(".py") else None


def worker_context() -> multiprocessing.context.BaseContext:
    """The start method for loader workers: ``forkserver`` (``spawn`` on Windows); ``fork``, with a
    warning, when the caller's main script has no ``__main__`` guard."""
    if sys.platform == "win32":
        return multiprocessing.get_context("spawn")
    script = _main_script()
    if script and _unguarded_script(script):
        warnings.warn(f"{script} runs code outside an `if __name__ == \"__main__\":` block, so littune forks "
                      "its loader workers from this process, which is unsafe while it runs other threads "
                      "(torch, OpenVINO, pyarrow); put the script's work under that guard to start them "
                      "from a fork server", RuntimeWarning, stacklevel=3)
        return multiprocessing.get_context("fork")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def loader_workers(num_workers: int) -> dict[str, Any]:
    """DataLoader keyword arguments for ``num_workers`` workers started by ``worker_context``
    (none for ``num_workers=0``: the caller's own process reads, and DataLoader refuses a context)."""
    return {"num_workers": num_workers, "multiprocessing_context": worker_context() if num_workers else None}
