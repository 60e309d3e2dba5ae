"""One Observation per lock store, however many prefixes of it are configured.

The cycle's unit is (source, organization): memory drops the locks a complete read of an
organization did not see, and the published per-lock series of an organization are replaced
by its latest complete read. A bucket watched under two prefixes read as two observations of
the same organization breaks both when one prefix's listing fails: the other prefix's
complete read would declare the failed prefix's locks gone (counted as cleared, their
observed age restarted) and drop their stale-lock series, resolving its alert during the
outage. So the reads of one bucket are merged: complete only if every prefix was read
completely, each lock once (overlapping prefixes list it twice).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from watchdog.model import BackendLock, Observation


def one_per_store(reads: Sequence[Observation]) -> list[Observation]:
    """`reads` (one per configured bucket and prefix) merged per organization, in the order
    each bucket first appears."""
    merged: dict[str, Observation] = {}
    for read in reads:
        earlier = merged.get(read.organization)
        if earlier is None:
            merged[read.organization] = read
            continue
        locks: dict[str, BackendLock] = {lock.path: lock for lock in earlier.backend_locks}
        for lock in read.backend_locks:
            locks.setdefault(lock.path, lock)
        merged[read.organization] = replace(
            earlier,
            server_now=max(earlier.server_now, read.server_now),
            backend_locks=tuple(locks.values()),
            complete=earlier.complete and read.complete,
            error=earlier.error or read.error,
            error_reason=earlier.error_reason or read.error_reason,
        )
    return list(merged.values())
