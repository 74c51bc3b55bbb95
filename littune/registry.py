"""One registry pattern for towers, losses and evaluators (after timm's ``register_model``).

A registry maps a family name to a factory. Names may carry an argument after a colon
(``timm:resnet50``, ``hf:./my-vit``): the part before the colon picks the factory and the rest is
passed to it as ``spec``. A name with no colon must match an entry exactly.

An entry is registered with a decorator on its factory, or declared by the factory's import path
(``reg.declare("efficientnet_lite0", "littune.towers.image_timm:efficientnet_lite0", ...)``): listing
declared entries imports nothing, and the module is imported the first time one is created, so
``littune towers`` answers without torch.
"""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


@dataclass
class Entry(Generic[T]):
    name: str
    target: Callable[..., T] | str  # the factory, or its import path "package.module:function"
    description: str = ""
    takes_spec: bool = False  # True for families such as ``timm:<model>``
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def factory(self) -> Callable[..., T]:
        if isinstance(self.target, str):  # a declared entry: import its module now
            module, _, attr = self.target.partition(":")
            self.target = getattr(importlib.import_module(module), attr)
        return self.target

    @property
    def display_name(self) -> str:
        return f"{self.name}:*" if self.takes_spec else self.name


class Registry(Generic[T]):
    """A named collection of factories: ``@reg.register(...)``, ``reg.create(...)``, ``reg.list()``."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, *, description: str = "", takes_spec: bool = False, **info: Any):
        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            self._add(Entry(name, factory, description, takes_spec, info))
            return factory

        return deco

    def declare(self, name: str, target: str, *, description: str = "", takes_spec: bool = False,
                **info: Any) -> None:
        """Register the factory at import path ``target`` ("package.module:function") without importing it."""
        self._add(Entry(name, target, description, takes_spec, info))

    def _add(self, entry: Entry[T]) -> None:
        if entry.name in self._entries:
            raise KeyError(f"{self.kind} '{entry.name}' is registered twice")
        self._entries[entry.name] = entry

    def resolve(self, name: str) -> tuple[Entry[T], str | None]:
        """The entry for ``name`` and the spec after its colon (None when there is none)."""
        family, sep, spec = name.partition(":")
        entry = self._entries.get(family)
        if entry is not None and sep and not entry.takes_spec:
            entry = None
        if entry is not None and not sep and entry.takes_spec:
            raise ValueError(f"{self.kind} '{name}' needs an argument: write '{family}:<name-or-path>'")
        if entry is None:
            known = [e.display_name for e in self._entries.values()]
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise KeyError(f"Unknown {self.kind} '{name}'. Known: {', '.join(known)}.{hint}")
        if sep and not spec:
            raise ValueError(f"{self.kind} '{name}' has an empty argument after ':'")
        return entry, (spec if sep else None)

    def create(self, name: str, **kwargs: Any) -> T:
        entry, spec = self.resolve(name)
        if entry.takes_spec:
            return entry.factory(spec, **kwargs)
        return entry.factory(**kwargs)

    def list(self) -> list[Entry[T]]:
        return list(self._entries.values())

    def __contains__(self, name: str) -> bool:
        try:
            self.resolve(name)
        except (KeyError, ValueError):
            return False
        return True
