"""Per-principal token buckets (docs/tfc-api.md, "Rate limits": per user, not per
token).

Buckets run on real time, not the simulated clock: a rate limit is about how fast a client
sends, and a frozen or accelerated simulated clock must not change that.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class Bucket:
    rate: float  # tokens per second
    capacity: float
    tokens: float
    stamp: float

    def take(self, now: float) -> float | None:
        """Take one token; None if granted, else the seconds until one is available."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str], Bucket] = {}

    def take(self, key: str, limit_class: str, rate: float, capacity: float) -> float | None:
        """Seconds to wait when `key` has exhausted `limit_class`, else None (granted)."""
        now = time.monotonic()
        bucket = self._buckets.get((key, limit_class))
        if bucket is None or bucket.rate != rate:
            bucket = Bucket(rate, capacity, capacity, now)
            self._buckets[(key, limit_class)] = bucket
        return bucket.take(now)

    def reset(self) -> None:
        self._buckets.clear()
