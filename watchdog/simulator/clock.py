"""The simulated clock.

A lock can be "5 hours old" without waiting 5 hours: scenario ages are relative to this
clock, the admin API advances it, and `time_scale` makes it run faster (demo) or stand still
(0: tests, where only explicit advances move it). Every response's `Date` header comes from
it, because the watchdog measures ages on the server's clock (README "How it works").
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache


class SimClock:
    def __init__(self, start: datetime | None = None, time_scale: float = 1.0) -> None:
        self._start = (start or datetime.now(UTC)).astimezone(UTC)
        self._anchor = time.monotonic()
        self._offset = 0.0
        self.time_scale = time_scale

    def now(self) -> datetime:
        elapsed = (time.monotonic() - self._anchor) * self.time_scale + self._offset
        return self._start + timedelta(seconds=elapsed)

    def advance(self, seconds: float) -> datetime:
        """Jump forward (never backward: time-ordered state would stop making sense)."""
        if seconds < 0:
            raise ValueError("the simulated clock only moves forward")
        self._offset += seconds
        return self.now()

    def reset(self, start: datetime | None, time_scale: float | None = None) -> None:
        self._start = (start or datetime.now(UTC)).astimezone(UTC)
        self._anchor = time.monotonic()
        self._offset = 0.0
        if time_scale is not None:
            self.time_scale = time_scale


# Cached: a list page formats thousands of timestamps, most of them unchanged since the
# last page (the issue's < 50 ms budget per page of 100 with includes).
@lru_cache(maxsize=1 << 16)
def iso_ms(moment: datetime) -> str:
    """`created-at` style: `2021-05-24T07:38:04.171Z` (docs/tfc-api.md, "Runs")."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


@lru_cache(maxsize=1 << 16)
def iso_seconds(moment: datetime) -> str:
    """`status-timestamps` style: `2021-05-24T07:38:04+00:00` (docs/tfc-api.md, "Runs")."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()
