"""One Observation per lock store, however many prefixes of it are configured.

The cycle's unit is (source, organization): memory drops the locks a complete read of an
organization did not see, and the published per-lock series of an organization are replaced
by its latest complete read. A bucket watched under two prefixes read as two observations of
the same organization breaks both when one prefix's listing fails: the other prefix's
complete read would declare the failed prefix's locks gone (counted as cleared, their
observed age restarted) and drop their stale-lock series, resolving its alert during the
outage. So the reads of one bucket are merged: complete only if every prefix was read
completely, each lock once (overlapping prefixes list it twice).

`read_store` is the one read of a store that every backend lock source makes: how a failure
part-way becomes a partial Observation is the same for DynamoDB, S3 and GCS, and so is
what becomes of a lock whose info cannot be read (`unreadable_lock`) and, for the two
stores of `.tflock` objects (S3, GCS), what a lock file's body becomes (`lockfile_lock`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime

import structlog

from watchdog.metrics import Metrics
from watchdog.model import BackendLock, Observation, Source
from watchdog.sources.errors import one_line
from watchdog.sources.lockinfo import LockInfoError, parse_lock_info, unparsed_lock_info

log = structlog.get_logger(__name__)

# Lock files are a few hundred bytes; anything far larger is not Terraform's and is not read.
MAX_LOCKFILE_BODY = 64 * 1024


async def observe_buckets(
    buckets: Iterable[tuple[str, str]], observe_bucket: Callable[[str, str], Observation]
) -> list[Observation]:
    """One Observation per bucket of the (bucket, prefix) pairs `buckets`, its prefixes' reads
    (`observe_bucket`, blocking: each runs in a worker thread) merged by `one_per_store`."""
    return one_per_store(
        [await asyncio.to_thread(observe_bucket, bucket, prefix) for bucket, prefix in buckets]
    )


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


def read_store(
    locks: Iterator[BackendLock | None],
    *,
    source: Source,
    store: str,
    label: str,
    server_now: Callable[[], datetime],
    metrics: Metrics,
    errors: tuple[type[Exception], ...],
    classify: Callable[[Exception], str],
    failed: str,
    **where: str,
) -> Observation:
    """One read of store `store` (a bucket, a table) as an Observation; never raises for the
    store's `errors`.

    `locks` reads the store lazily (None for an entry released while it was listed). A failure
    part-way is counted, logged as `failed` with the fields `where`, and gives a partial
    picture: the locks read before it are real and fully read, and `complete=False` makes sure
    nothing relies on what is missing. `label` names the store in the Observation's error
    (e.g. "S3 bucket").
    """
    read: list[BackendLock] = []
    try:
        for lock in locks:
            if lock is not None:
                read.append(lock)
    except errors as exc:
        reason = classify(exc)
        metrics.observe_error(source.value, reason)
        log.warning(failed, **where, reason=reason, error=one_line(exc))
        return Observation(
            source=source,
            organization=store,
            server_now=server_now(),
            backend_locks=tuple(read),
            complete=False,
            error=f"{label} {store}: {one_line(exc)}",
            error_reason=reason,
        )
    return Observation(
        source=source, organization=store, server_now=server_now(), backend_locks=tuple(read)
    )


def unreadable_lock(
    *,
    source: Source,
    store: str,
    path: str,
    token: str,
    created: datetime,
    problem: str,
    metrics: Metrics,
    event: str,
    **where: str,
) -> BackendLock:
    """A lock whose info cannot be read, counted in `parse_errors` and logged as `event` with
    the fields `where`. It is kept (with its `problem`) so it is reported; it is never acted
    on. `created` is the store's time of the write, only for display."""
    metrics.parse_errors.inc()
    log.warning(event, **where, problem=problem)
    return BackendLock(
        source=source,
        store=store,
        path=path,
        info=unparsed_lock_info(created),
        token=token,
        problem=problem,
    )


def lockfile_lock(
    body: bytes | None,
    *,
    source: Source,
    store: str,
    path: str,
    token: str,
    stored_at: datetime,
    now: datetime,
    metrics: Metrics,
    lock_id: str | None = None,
    **where: str,
) -> BackendLock:
    """The lock a `.tflock` object's `body` describes (None: larger than MAX_LOCKFILE_BODY, so
    not downloaded), or an `unreadable_lock` when the body is too large or not lock info.

    `stored_at` is the store's own time of the write (Terraform creates lock files, never
    rewrites them): the server-clock evidence a client-written `Created` is checked against,
    and the `Created` of a body without one. `now` is the store's clock; `lock_id`, when given,
    replaces the body's `ID` (parse_lock_info)."""
    problem: str | None = None
    if body is None or len(body) > MAX_LOCKFILE_BODY:
        problem = f"lock file is larger than {MAX_LOCKFILE_BODY} bytes"
    else:
        try:
            info = parse_lock_info(body, fallback_created=stored_at, now=now, lock_id=lock_id)
        except LockInfoError as exc:
            problem = str(exc)
    if problem is not None:
        return unreadable_lock(
            source=source,
            store=store,
            path=path,
            token=token,
            created=stored_at,
            problem=problem,
            metrics=metrics,
            event="unreadable lock file",
            **where,
        )
    return BackendLock(
        source=source, store=store, path=path, info=info, token=token, last_modified=stored_at
    )
