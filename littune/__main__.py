"""``python -m littune``: the same as the ``littune`` command."""
import sys

from littune.cli import main

sys.exit(main())
