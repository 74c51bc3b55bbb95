"""`littune ... | head`: a reader that closes the pipe ends the output quietly, with the exit code of a
process stopped by SIGPIPE (141), not "error: Broken pipe" and exit 2 as before."""
from __future__ import annotations

import os
import subprocess
import sys

from littune.cli import EXIT_CLOSED_PIPE
from tests.serve.live import REPO


def test_closed_pipe_ends_quietly():
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "littune", "towers"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # the reader is gone before the first line (`| head -0`)
    err = proc.stderr.read().decode()
    assert proc.wait(60) == EXIT_CLOSED_PIPE == 141
    assert err == "", err
