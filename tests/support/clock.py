"""A hand-driven clock for memory.Memory: the local wall clock and the tick clock move only
when a test says so, and each can be stepped alone (an NTP step, a suspended host)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


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
