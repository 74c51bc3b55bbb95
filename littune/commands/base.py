"""The sub-command registry: ``@command(name, help)`` on a function that adds its arguments to a
parser and returns its runner (``args -> exit code``). ``cli.py`` builds the parser from it."""
from __future__ import annotations

import argparse
from typing import Callable

from ..registry import Registry

Runner = Callable[[argparse.Namespace], int]
COMMANDS: Registry[Runner] = Registry("command")


def command(name: str, help: str):
    """Register a sub-command: the function adds its arguments and returns its runner."""
    return COMMANDS.register(name, description=help)
