"""Two-tier polling of one organization: when to walk every workspace, and whether the
fast path (only workspaces whose current run is not final) can be trusted.

A full walk costs ceil(N/100) requests; the fast path, `filter[current-run][status]=<every
non-final status>`, one page at low activity. The filter is documented loosely (the API's
OpenAPI spec takes a comma-separated list, the prose docs one status) and an unknown value
silently answers an empty set, so the fast path is checked against the full walks:

- each full walk compares the non-final current runs it found with what the last fast read
  returned; a run the fast read should have listed and did not switches the organization to
  a full walk every cycle (logged once, `tfc_watchdog_fast_path_disabled` 1), for
  FAST_PATH_RECHECK, after which the fast path is tried (and checked) again;
- a fast read that lists a workspace whose current run is final (or that has none) shows a
  server that ignored the filter: the same switch;
- a comma list the server refuses (400/422) falls back to one request per status, remembered
  for the process.

Nothing here does I/O; TfcSource asks and reports. Times are on the watchdog's monotonic
clock, except run creation times (the server's).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final

from watchdog.model import Workspace

# How long an organization stays on full walks every cycle after the fast path missed a run
# (or was ignored by the server) before the fast path is tried again. An hour: long enough
# that a server which does not support the filter costs one extra fast request an hour, short
# enough that a transient answer does not cost the budget for the day.
FAST_PATH_RECHECK: Final = timedelta(hours=1)

# A full walk is due when this share of `full_scan_interval` has passed: cycles start a few
# milliseconds late or early, and a walk due at 599.99 s must not wait a whole interval more.
_DUE_SHARE: Final = 0.95

Run = tuple[str, str]  # (workspace id, run id)


def non_final_runs(workspaces: Iterable[Workspace], *, created_before: datetime | None) -> set[Run]:
    """(workspace, run) of each non-final current run (created before the given time)."""
    runs: set[Run] = set()
    for workspace in workspaces:
        run = workspace.current_run
        if run is None or run.is_final:
            continue
        if created_before is None or run.created_at < created_before:
            runs.add((workspace.id, run.id))
    return runs


@dataclass(slots=True)
class FastRead:
    """What the last fast read of the organization listed."""

    # The server's clock before it was sent: a run created before then, non-final at the
    # next full walk, was non-final during the fast read (statuses only move towards final),
    # so the filter had to list it.
    started: datetime
    runs: frozenset[Run]
    # Workspaces whose entry could not be parsed: their runs are not known to be missed.
    unreadable: frozenset[str] = frozenset()


@dataclass(slots=True)
class OrganizationSchedule:
    """One organization's two-tier state."""

    full_scan_interval: timedelta
    last_full: float | None = None  # monotonic time of the last complete full walk
    # The locked workspaces of the last complete full walk: carried into the fast reads that
    # do not list them (user/team locks, locks of runs that are final).
    carried: tuple[Workspace, ...] = ()
    total: int = 0
    last_fast: FastRead | None = None
    disabled_until: float | None = None  # monotonic; None: the fast path is in use
    comma_list_refused: bool = False
    # The switch to full walks was logged (once per switch).
    announced: bool = False

    def full_due(self, now: float) -> bool:
        """Whether this cycle walks every workspace."""
        if not self.full_scan_interval or self.last_full is None:
            return True
        if self.disabled(now):
            return True
        due = self.full_scan_interval.total_seconds() * _DUE_SHARE
        return now - self.last_full >= due

    def disabled(self, now: float) -> bool:
        """Whether the fast path is switched off now; the switch lifts once
        FAST_PATH_RECHECK has passed (the next fast read is then checked afresh)."""
        if self.disabled_until is None:
            return False
        if now >= self.disabled_until:
            self.disabled_until = None
            self.last_fast = None
            self.announced = False
            return False
        return True

    def disable(self, now: float) -> bool:
        """Switch to full walks every cycle; True the first time (to log it once)."""
        self.disabled_until = now + FAST_PATH_RECHECK.total_seconds()
        self.last_fast = None
        if self.announced:
            return False
        self.announced = True
        return True

    def full_walk_done(self, now: float, workspaces: Iterable[Workspace], total: int) -> set[Run]:
        """Record a complete full walk; returns the runs the last fast read missed."""
        kept = tuple(workspaces)
        self.last_full = now
        self.total = total
        self.carried = tuple(ws for ws in kept if _carried(ws))
        missed: set[Run] = set()
        if self.last_fast is not None:
            expected = non_final_runs(kept, created_before=self.last_fast.started)
            unreadable = self.last_fast.unreadable
            missed = {run for run in expected - self.last_fast.runs if run[0] not in unreadable}
        self.last_fast = None
        return missed


def _carried(workspace: Workspace) -> bool:
    """Locked: a fast read replaces it when it lists it, else carries it (carried_view)."""
    return workspace.locked


def carried_view(workspace: Workspace) -> Workspace:
    """A workspace carried into a fast read. Its current run, if it was not final at the
    full walk, is dropped: the fast read did not list it, so it has ended (or the fast path
    missed it, which the next full walk's self-check finds); an old run must not be reported
    or acted on as stuck."""
    run = workspace.current_run
    if run is None or run.is_final:
        return workspace
    return replace(workspace, current_run=None)
