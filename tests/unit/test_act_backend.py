"""act.py for S3-backend locks: re-read, the same lock still stale, dry-run, compare-and-delete
outcomes, budgets and audit events.

A strict fake lock store answers only what a test set up and fails loudly on anything else;
the ladder on the fresh read is the real decide. (The real stores against moto_server:
tests/e2e/test_s3_backend_sources.py and test_s3_backend_watchdog.py.)
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from tests.support.builders import NOW, H, delete_lock_action
from watchdog.act import Actor
from watchdog.decide import decide
from watchdog.memory import Memory
from watchdog.metrics import Metrics
from watchdog.model import (
    ActionResult,
    BackendLock,
    Observation,
    Outcome,
    PlannedAction,
    Source,
    TerraformLockInfo,
)
from watchdog.policy import Policy
from watchdog.sources.errors import ChangedError, ForbiddenError, SourceError

TABLE = "terraform-locks"
PATH = "tf-state/prod/app.tfstate"


def policy(*, dry_run: bool = False, per_cycle: int = 10, per_hour: int = 100) -> Policy:
    return Policy.model_validate(
        {
            "dry_run": dry_run,
            "s3_backend": {"dynamodb_tables": [TABLE]},
            "limits": {"max_actions_per_cycle": per_cycle, "max_actions_per_hour": per_hour},
            "defaults": {"lock_stale_after": "2h", "actions": ["delete_lock"]},
        }
    )


def lock(path: str = PATH, lock_id: str = "lock-1", age: timedelta = 3 * H) -> BackendLock:
    info = TerraformLockInfo(
        id=lock_id,
        operation="OperationTypeApply",
        who="runner@ci-42",
        version="1.15.5",
        created=NOW - age,
        path=path,
    )
    return BackendLock(Source.DYNAMODB, TABLE, path, info, token=f'{{"ID":"{lock_id}"}}')


class FakeStore:
    """A strict lock store: `locks` is what a fresh read returns; every call is recorded."""

    def __init__(self, *locks: BackendLock, now: datetime = NOW) -> None:
        self.locks = {lk.path: lk for lk in locks}
        self.clock = now
        self.calls: list[tuple[str, str]] = []
        self.read_error: Exception | None = None
        self.delete_error: Exception | None = None

    def now(self) -> datetime:
        return self.clock

    async def read_lock(self, store: str, path: str) -> BackendLock | None:
        assert store == TABLE, f"unexpected store {store}"
        self.calls.append(("read", path))
        if self.read_error is not None:
            raise self.read_error
        return self.locks.get(path)

    async def delete_lock(self, backend_lock: BackendLock) -> None:
        self.calls.append(("delete", backend_lock.path))
        if self.delete_error is not None:
            raise self.delete_error
        current = self.locks.get(backend_lock.path)
        if current is None or current.token != backend_lock.token:
            raise ChangedError(f"lock {backend_lock.path} changed")
        del self.locks[backend_lock.path]

    @property
    def deletes(self) -> list[str]:
        return [path for call, path in self.calls if call == "delete"]


def planned(*locks: BackendLock) -> tuple[list[PlannedAction], Memory]:
    """What decide plans for these locks after two cycles (the real ladder)."""
    memory = Memory()
    observation = Observation(Source.DYNAMODB, TABLE, NOW, backend_locks=locks)
    # Watched continuously, in one-minute cycles, for longer than
    # limits.backend_lock_min_observed (10m).
    for minutes_ago in range(15, -1, -1):
        memory.update([observation], NOW - timedelta(minutes=minutes_ago))
    decision = decide([observation], policy(), memory, NOW)
    return list(decision.planned), memory


def make_actor(store: FakeStore, memory: Memory) -> tuple[Actor, Metrics]:
    metrics = Metrics()
    actor = Actor(
        source=None,
        memory=memory,
        metrics=metrics,
        log=structlog.get_logger("watchdog.act"),
        backend_sources={Source.DYNAMODB: store},
    )
    return actor, metrics


async def act_on(
    store: FakeStore, *locks: BackendLock, pol: Policy | None = None
) -> tuple[list[ActionResult], Metrics, Memory]:
    """An Actor over `store` carries out, under `pol` (the default policy unless given), what
    decide planned for `locks` (the stale lock-1 unless given) under the default policy."""
    actions, memory = planned(*(locks or (lock(),)))
    actor, metrics = make_actor(store, memory)
    results = await actor.carry_out(actions, pol or policy(), NOW, None)
    return results, metrics, memory


def count(metrics: Metrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "tfc_watchdog_actions_total", {"action": "delete_lock", "outcome": outcome}
    )
    assert value is not None
    return value


def audit_events(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if "outcome" in e]


async def test_a_stale_lock_still_there_is_deleted_once_and_audited() -> None:
    store = FakeStore(lock())

    with capture_logs() as logs:
        results, metrics, memory = await act_on(store)

    assert [r.outcome for r in results] == [Outcome.DONE]
    assert store.calls == [("read", PATH), ("delete", PATH)]
    assert count(metrics, "done") == 1
    (event,) = audit_events(logs)
    assert event["action"] == "delete_lock"
    assert event["source"] == "dynamodb"
    assert event["organization"] == TABLE
    assert event["workspace"] == PATH
    assert event["holder"] == "terraform:runner@ci-42"
    assert event["lock_id"] == "lock-1"
    assert event["lock_who"] == "runner@ci-42"
    assert event["lock_operation"] == "OperationTypeApply"
    assert memory.actions_in_window() == 1


async def test_dry_run_reads_but_sends_no_delete_and_logs_would() -> None:
    store = FakeStore(lock())

    with capture_logs() as logs:
        results, metrics, _ = await act_on(store, pol=policy(dry_run=True))

    assert [r.outcome for r in results] == [Outcome.DRY_RUN]
    assert store.deletes == []
    assert count(metrics, "dry_run") == 1
    (event,) = audit_events(logs)
    assert event["event"] == f"would delete_lock {TABLE}/{PATH}"
    assert event["lock_id"] == "lock-1"


async def test_a_lock_released_before_the_re_read_is_skipped_without_delete() -> None:
    store = FakeStore()

    results, metrics, _ = await act_on(store)

    assert [r.outcome for r in results] == [Outcome.SKIPPED_CHANGED]
    assert "released" in results[0].detail
    assert store.deletes == []
    assert count(metrics, "skipped_changed") == 1


async def test_a_lock_taken_by_another_run_before_the_re_read_is_skipped_without_delete() -> None:
    store = FakeStore(lock(lock_id="lock-2"))

    results, *_ = await act_on(store)

    assert [r.outcome for r in results] == [Outcome.SKIPPED_CHANGED]
    assert "lock-1 -> lock-2" in results[0].detail
    assert store.deletes == []


async def test_a_lock_no_longer_stale_by_the_stores_clock_is_skipped() -> None:
    # The fresh read's clock says the lock is only one hour old (threshold 2h).
    store = FakeStore(lock(), now=NOW - 2 * H)

    results, *_ = await act_on(store)

    assert [r.outcome for r in results] == [Outcome.SKIPPED_CHANGED]
    assert store.deletes == []


async def test_a_failed_condition_on_delete_is_skipped_changed() -> None:
    store = FakeStore(lock())
    store.delete_error = ChangedError("lock changed or was released since it was read")

    results, metrics, memory = await act_on(store)

    assert [r.outcome for r in results] == [Outcome.SKIPPED_CHANGED]
    assert count(metrics, "skipped_changed") == 1
    assert memory.actions_in_window() == 1  # sent: it counts whatever the answer


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (ForbiddenError("DeleteItem on terraform-locks: AccessDeniedException"), "forbidden"),
        # The delete may have reached the store: unknown, and it counts.
        (SourceError("DeleteItem on terraform-locks: timed out", reason="timeout"), "unknown"),
        (SourceError("DeleteItem on terraform-locks: HTTP 500", reason="server_error"), "unknown"),
        (SourceError("DeleteItem on terraform-locks: reset", reason="transport"), "unknown"),
        # Refused or never made: the store did nothing.
        (SourceError("DeleteItem on terraform-locks: throttled", reason="rate_limited"), "failed"),
        (SourceError("DeleteItem on terraform-locks: bad request"), "failed"),
    ],
)
async def test_delete_errors_become_outcomes(error: Exception, outcome: str) -> None:
    store = FakeStore(lock())
    store.delete_error = error

    results, metrics, memory = await act_on(store)

    assert [r.outcome.value for r in results] == [outcome]
    assert str(error) in results[0].detail
    assert count(metrics, outcome) == 1
    assert memory.actions_in_window() == 1


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (ForbiddenError("GetItem on terraform-locks: AccessDeniedException"), Outcome.FORBIDDEN),
        (SourceError("GetItem on terraform-locks: connection refused"), Outcome.FAILED),
    ],
)
async def test_a_failed_re_read_sends_no_delete(error: Exception, outcome: Outcome) -> None:
    store = FakeStore(lock())
    store.read_error = error

    results, *_ = await act_on(store)

    assert [r.outcome for r in results] == [outcome]
    assert store.deletes == []


async def test_the_per_cycle_budget_holds_for_deletes_too() -> None:
    locks = [lock(path=f"tf-state/app-{n}.tfstate", lock_id=f"lock-{n}") for n in range(3)]
    store = FakeStore(*locks)

    results, metrics, _ = await act_on(store, *locks, pol=policy(per_cycle=1))

    assert [r.outcome for r in results] == [
        Outcome.DONE,
        Outcome.SKIPPED_BUDGET,
        Outcome.SKIPPED_BUDGET,
    ]
    assert len(store.deletes) == 1
    assert count(metrics, "skipped_budget") == 2


async def test_a_delete_lock_without_its_observed_lock_is_a_bug() -> None:
    stale = lock()
    store = FakeStore(stale)
    actions, memory = planned(stale)
    pol = policy()
    actor, _ = make_actor(store, memory)

    with pytest.raises(ValueError, match="without the lock"):
        await actor.carry_out([replace(actions[0], backend_lock=None)], pol, NOW, None)
    assert store.calls == []


async def test_a_source_without_a_configured_store_fails_without_any_call() -> None:
    stale = replace(lock(), source=Source.S3)
    action = delete_lock_action(stale)
    store = FakeStore(lock())
    pol = policy()
    actor, _ = make_actor(store, Memory())

    results = await actor.carry_out([action], pol, NOW, None)

    assert [r.outcome for r in results] == [Outcome.FAILED]
    assert store.calls == []
