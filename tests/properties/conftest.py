"""Quiet logs while the properties run, and the harness every example of a module shares.

How many examples run: tests/properties/profile.py.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.properties.world import Harness, Recorder
from tests.support.logstate import quiet_logs


@pytest.fixture(scope="package", autouse=True)
def _quiet_logs() -> Iterator[None]:
    """Thousands of cycles would otherwise print every audit line; restored afterwards."""
    with quiet_logs():
        yield


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


@pytest.fixture(scope="module")
def harness(request: pytest.FixtureRequest, state_dir: Path) -> Iterator[Harness]:
    """One simulator app and event loop for all examples of a module (see world.Harness),
    recording through the module's `RECORDER` class if it names one."""
    recorder = getattr(request.module, "RECORDER", Recorder)
    with Harness(state_dir, recorder=recorder) as shared:
        yield shared
