"""Shared pieces of the tests of the Terraform-backend lock sources (DynamoDB, S3 and GCS lock
files): the lock info Terraform stores, a source's one lock, what an incomplete read must look
like, and a source whose lock another run takes over right after the watchdog's re-read."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

import structlog

from tests.support.terraform import Terraform
from watchdog.act import Actor, BackendLockTarget
from watchdog.memory import Memory
from watchdog.metrics import Metrics
from watchdog.model import BackendLock, Observation, Source


def lock_info_json(path: str, **overrides: str) -> str:
    """The lock info document Terraform writes for a lock of `path` (fields: its `LockInfo`)."""
    document = {
        "ID": "6f1c6a43-2a57-4c3e-a1c4-0d5e6a7b8c9d",
        "Operation": "OperationTypeApply",
        "Info": "",
        "Who": "runner@ci-42",
        "Version": "1.15.5",
        "Created": "2026-11-29T04:14:57.641020969Z",
        "Path": path,
        **overrides,
    }
    return json.dumps(document)


def converge(terraform: Terraform) -> None:
    """The state survived its lock's removal: an apply takes the lock at once (no wait for a
    leftover one) and a plan then finds nothing to change."""
    common = ("-input=false", "-no-color", "-var", "input=b", "-lock-timeout=0s")
    terraform.run("apply", "-auto-approve", *common).check()
    terraform.run("plan", "-detailed-exitcode", *common).check(0)


class Observing(Protocol):
    async def observe(self) -> list[Observation]: ...


async def only_lock(source: Observing) -> BackendLock:
    """The one lock a complete read of the source's one store finds."""
    (observation,) = await source.observe()
    assert observation.complete, observation.error
    (lock,) = observation.backend_locks
    return lock


async def only_reported_lock(
    source: Observing, kind: Source, store: str, path: str
) -> tuple[Observation, BackendLock]:
    """The one store's complete read and its one lock, of `path`, without a problem."""
    (observation,) = await source.observe()
    assert (observation.source, observation.organization, observation.complete) == (
        kind,
        store,
        True,
    )
    (lock,) = observation.backend_locks
    assert (lock.source, lock.store, lock.path, lock.problem) == (kind, store, path, None)
    return observation, lock


def assert_missing_store(observation: Observation, name: str) -> None:
    """A store that does not exist: an incomplete read that names it, in one line."""
    assert not observation.complete
    assert observation.error_reason == "not_found"
    assert name in (observation.error or "")
    assert "\n" not in (observation.error or "")


def assert_unreachable(observation: Observation, metrics: Metrics, kind: Source) -> None:
    """An endpoint nobody listens on: an incomplete read with no locks, one line, counted."""
    assert not observation.complete
    assert observation.error
    assert "\n" not in observation.error
    assert observation.error_reason == "transport"
    assert observation.backend_locks == ()
    errors = metrics.registry.get_sample_value(
        "tfc_watchdog_observe_errors_total", {"source": kind.value, "reason": "transport"}
    )
    assert errors == 1


def backend_actor(
    memory: Memory, metrics: Metrics, kind: Source, source: BackendLockTarget
) -> Actor:
    """act's Actor over one backend lock source (no TFC source)."""
    return Actor(
        source=None,
        memory=memory,
        metrics=metrics,
        log=structlog.get_logger("test"),
        backend_sources={kind: source},
    )


class TakenOverAfterTheReread:
    """A real lock source whose lock another run takes over right after act's re-read: in the
    window just before the (compare-and-)delete, which no re-read can close."""

    def __init__(self, source: BackendLockTarget, take_over: Callable[[], None]) -> None:
        self.source = source
        self.take_over = take_over

    def now(self) -> datetime:
        return self.source.now()

    async def read_lock(self, store: str, path: str) -> BackendLock | None:
        fresh = await self.source.read_lock(store, path)
        self.take_over()
        return fresh

    async def delete_lock(self, lock: BackendLock) -> None:
        await self.source.delete_lock(lock)
