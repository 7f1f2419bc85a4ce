"""Running ``cli.py`` as a user does, in a subprocess that cannot stall the test suite.

A multi-process run is rank 0 plus the rank processes Lightning starts from it: on a timeout the whole process
group is killed (``subprocess.run``'s own timeout kills rank 0 only, and a hung rank 1 would live on) and the test
fails naming the command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(
    *args: str, timeout: float = 300, env: dict[str, str] | None = None, script: str = "cli.py"
) -> subprocess.CompletedProcess:
    """``python cli.py *args`` (or another ``script`` that runs the CLI) in the repository root; its output captured.
    Fails the calling test if the run has not ended within ``timeout`` seconds (after killing every process of it)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, script, *args], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(
            f"{script} {' '.join(args)} did not end within {timeout:g} s (killed); last output:\n{err[-3000:]}"
        ) from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
