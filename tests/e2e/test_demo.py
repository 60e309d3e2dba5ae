"""`tfc-watchdog demo` runs to its summary: assert on its output only."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdog", "demo", *args],
        # A 120-column terminal: every line must fit it.
        env={**os.environ, "COLUMNS": "120"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_demo_tells_the_whole_story_and_ends_with_a_summary() -> None:
    result = run_demo()
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
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


def test_demo_in_dry_run_changes_nothing() -> None:
    result = run_demo("--dry-run")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
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
