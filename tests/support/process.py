"""Run a command in a child process for a test that needs the process boundary: the exit code
of a real command, all it writes to stderr, a fresh interpreter, or a hang cut off by a timeout.

(`tests.support.daemon.run_cli` is `python -m watchdog ARGS` this way with a clean
environment; `tests.support.incli.run_main` runs a command in this process, which is cheaper
when the boundary is not the point.)
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# subprocess.run with stdout and stderr captured as text. A non-zero exit does not raise: the
# tests assert on the code and the output; the timeout is a guard against a hang. Callers add
# subprocess.run's own keywords (cwd, env, input), and may set another timeout.
run_captured = functools.partial(
    subprocess.run, capture_output=True, text=True, check=False, timeout=60
)


def make(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`make ARGS` in the repository, as a developer runs a target (a target's recipe and its
    exit code are what the Makefile's tests check)."""
    return run_captured(["make", "--no-print-directory", *args], cwd=REPO, env=env, timeout=30)
