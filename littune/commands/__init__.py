"""Sub-commands beyond ``towers``; importing this package registers each with ``cli.command``."""
from . import demo, embed, evaluate, export, infer, serve, study, train  # noqa: F401
