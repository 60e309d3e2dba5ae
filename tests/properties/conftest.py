"""Hypothesis profiles for the safety properties, and quiet logs while they run.

`ci` (the default): 300 examples per property, no deadline (machines are noisy; the suite's
time budget is kept by the size of the worlds, not by per-example timing). `soak`: 10,000
(`make soak`). Choose with HYPOTHESIS_PROFILE.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "soak",
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="package", autouse=True)
def _quiet_logs() -> Iterator[None]:
    """Thousands of cycles would otherwise print every audit line; restored afterwards."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    yield
    structlog.configure(**saved)


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where each example's state file lives (removed at the start of every example).

    On tmpfs when the machine has one: the state file is fsynced every cycle, and thousands
    of fsyncs to a disk would dominate the run time."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        with tempfile.TemporaryDirectory(dir=shm, prefix="tfc-watchdog-props-") as path:
            yield Path(path)
        return
    yield tmp_path_factory.mktemp("state")
