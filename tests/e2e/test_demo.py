"""`tfc-watchdog demo` runs to its summary: assert on its output only.

One test runs the demo enforcing, then in dry-run.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def start_demo(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "watchdog", "demo", *args],
        # A 120-column terminal: every line must fit it.
        env={**os.environ, "COLUMNS": "120"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(demo: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = demo.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        demo.kill()
        out, err = demo.communicate()
        raise AssertionError(f"the demo ran longer than 120 s:\n{out}{err}") from None
    return demo.returncode, out, err


def test_demo_tells_the_whole_story_and_in_dry_run_changes_nothing() -> None:
    # One after the other: side by side they compete for the CPU with each other and with
    # the other workers, and the demo gives up after 50 s.
    tells_the_whole_story_and_ends_with_a_summary(*finish(start_demo()))
    in_dry_run_changes_nothing(*finish(start_demo("--dry-run")))


def tells_the_whole_story_and_ends_with_a_summary(code: int, out: str, err: str) -> None:
    assert code == 0, out + err
    assert "/metrics" in out
    assert max(len(line) for line in out.splitlines()) <= 120
    # The stuck apply: cancelled, then force-cancelled, and the queued run starts.
    assert "ACTED    payments-prod: cancelled the stuck run" in out
    assert "ACTED    payments-prod: force-cancelled the run" in out
    assert "STARTED  payments-prod: the queued run" in out
    # The run waiting two days is discarded; the stale user lock is force-unlocked.
    assert "ACTED    billing-staging: discarded the run" in out
    assert "ACTED    legacy-network: force-unlocked the stale lock" in out
    # The young lock and the protected workspace are left alone, with why.
    assert "WAIT     web-dev: young lock" in out
    assert "WAIT     prod-core: protected" in out
    summary = out.split("Summary", 1)[1]
    assert "legacy-network   force_unlock: done" in summary
    assert "web-dev          left alone: young lock" in summary
    assert "prod-core        left alone: protected" in summary
    # Force-cancel came after cancel: the ladder is climbed in order.
    assert out.index("cancelled the stuck run") < out.index("force-cancelled the run")


def in_dry_run_changes_nothing(code: int, out: str, err: str) -> None:
    assert code == 0, out + err
    assert "WOULD    cancel payments-prod" in out
    assert "WOULD    discard billing-staging" in out
    assert "WOULD    force_unlock legacy-network" in out
    assert out.count("WOULD    cancel payments-prod") == 1
    assert "ACTED" not in out
    summary = out.split("Summary", 1)[1]
    legacy = next(line for line in summary.splitlines() if line.startswith("legacy-network"))
    assert "locked by bob" in legacy
    payments = next(line for line in summary.splitlines() if line.startswith("payments-prod"))
    assert "cancel: dry_run" in payments
    assert "run applying" in payments
