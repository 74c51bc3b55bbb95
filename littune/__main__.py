"""``python -m littune``: the same as the ``littune`` command."""
import sys

from littune.cli import main

if __name__ == "__main__":  # guarded: loader workers start from a fork server, which re-imports this module
    sys.exit(main())
