"""The watchdog's own clock in tests: a hand-driven clock for memory.Memory (the local wall
clock and the tick clock move only when a test says so, and each can be stepped alone: an
NTP step, a suspended host), and moving a real process's state file back in time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path


class FakeClock:
    def __init__(self, wall: datetime = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)) -> None:
        self._wall = wall
        self._ticks = 1000.0

    def wall(self) -> datetime:
        return self._wall

    def ticks(self) -> float:
        return self._ticks

    def advance(self, delta: timedelta) -> None:
        """Real time passes: both clocks move."""
        self._wall += delta
        self._ticks += delta.total_seconds()

    def step_wall(self, delta: timedelta) -> None:
        """The wall clock is stepped (NTP, an operator); no real time passes."""
        self._wall += delta


def shift_watchdog_clock(state_file: Path, delta: timedelta, *, locks: bool = True) -> None:
    """Move the times the state file holds on the watchdog's own clock by `delta`: as if the
    file had been written that much earlier (the process was down meanwhile). The server's
    clock is the simulator's, moved with `advance`; this is the other half of "time passed".
    `locks=False` moves only the action records (the budget), not the lock sightings."""
    document = json.loads(state_file.read_text())
    entries = [
        entry
        for workspaces in document["locks"].values()
        for holders in workspaces.values()
        for entry in holders.values()
        if locks
    ]
    for entry in [*entries, *document["actions"]]:
        for key in ("last_seen_local", "at_local"):
            if isinstance(entry, dict) and key in entry:
                entry[key] = (datetime.fromisoformat(entry[key]) + delta).isoformat()
    state_file.write_text(json.dumps(document))
