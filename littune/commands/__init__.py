"""Sub-commands beyond ``towers``; each module registers itself with ``cli.command``."""
