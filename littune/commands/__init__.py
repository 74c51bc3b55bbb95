"""Sub-commands; importing this package registers each in ``base.COMMANDS`` (in help order)."""
from . import towers, embed, cache, train, evaluate, demo, study, infer, serve, export  # noqa: F401
from .base import COMMANDS, command

__all__ = ["COMMANDS", "command"]
