"""Lazy re-exports for package ``__init__`` files (PEP 562 module ``__getattr__``).

A package that re-exports its modules' names (``from littune.cache import EmbeddingCache``) would
import every module, and with them torch, timm and transformers, as soon as anything under it is
imported: ``littune --help`` would take seconds. Instead each ``__init__`` lists its names by module
and imports a module the first time one of its names is asked for:

    __getattr__, __dir__, __all__ = lazy_exports(__name__, {".reader": ["EmbeddingCache"], ...})
"""
from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Iterable, Mapping


def lazy_exports(package: str, exports: Mapping[str, Iterable[str]]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` for ``package``: ``exports`` maps a module,
    written as in a relative import (``.reader``, ``..config``), to the names it provides."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__, list(where)
