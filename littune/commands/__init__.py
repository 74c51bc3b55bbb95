"""Sub-commands beyond ``towers``; importing this package registers each with ``cli.command``."""
from . import demo, embed, evaluate, train  # noqa: F401
