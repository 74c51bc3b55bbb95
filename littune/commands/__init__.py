"""Sub-commands; importing this package registers each in ``base.COMMANDS`` (in help order)."""
from . import towers, embed, cache, train, evaluate, demo, study, infer, interpolate, serve, export, verify  # noqa: F401
from .base import COMMANDS, command

__all__ = ["COMMANDS", "command"]
