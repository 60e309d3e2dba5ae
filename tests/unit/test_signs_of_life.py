"""Signs of life: a user/team lock whose workspace's `latest-change-at` (the creation time of
its latest state version) moved while the lock was held is alive, and its observed age
restarts from that activity."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.builders import BOB, NOW, ORG, M, locked_workspace
from tests.support.clock import FakeClock
from watchdog.decide import decide
from watchdog.memory import Memory
from watchdog.metrics import LockPicture, Metrics
from watchdog.model import Holder, HolderType, Observation, Source, Workspace
from watchdog.policy import Policy
from watchdog.report import lock_to_json
from watchdog.sources.tfc.parse import parse_workspace_document

POLICY = Policy.model_validate(
    {
        "dry_run": False,
        "tfc": {"organizations": [ORG]},
        "defaults": {"lock_stale_after": "1h", "actions": ["force_unlock"]},
    }
)


def locked(change: datetime | None, holder: Holder = BOB) -> Workspace:
    return locked_workspace(holder, latest_change_at=change)


def watch(memory: Memory, clock: FakeClock, at: datetime, workspace: Workspace) -> Observation:
    clock.advance(M)
    observation = Observation(
        source=Source.TFC, organization=ORG, server_now=at, workspaces=(workspace,)
    )
    memory.update([observation], at)
    return observation


def test_a_state_version_created_while_the_lock_is_held_restarts_its_age() -> None:
    clock = FakeClock()
    memory = Memory(clock=clock)
    before = NOW - timedelta(hours=5)  # the last change before the lock was first seen
    watch(memory, clock, NOW, locked(before))
    watch(memory, clock, NOW + 50 * M, locked(before))
    assert memory.first_seen("ws-1", "user-bob") == NOW
    assert memory.last_activity("ws-1", "user-bob") is None

    # An intermediate snapshot at +55m: alive. Its age runs from there.
    observation = watch(memory, clock, NOW + 70 * M, locked(NOW + 55 * M))

    assert memory.first_seen("ws-1", "user-bob") == NOW + 55 * M
    assert memory.last_activity("ws-1", "user-bob") == NOW + 55 * M
    decision = decide([observation], POLICY, memory, NOW + 70 * M)
    [lock] = decision.locks
    assert (lock.stale, lock.age, lock.last_activity) == (False, 15 * M, NOW + 55 * M)
    assert decision.planned == ()
    assert lock_to_json(lock)["last_activity"] == "2024-06-01T12:55:00Z"  # NOW + 55 * M

    # Quiet since: stale an hour after the last activity, then force-unlocked.
    later = NOW + 116 * M
    observation = watch(memory, clock, later, locked(NOW + 55 * M))
    [action] = decide([observation], POLICY, memory, later).planned
    assert action.kind.value == "force_unlock"
    assert action.age == 61 * M


def test_without_activity_the_age_is_the_observed_one_and_a_run_lock_ignores_it() -> None:
    clock = FakeClock()
    memory = Memory(clock=clock)
    run = Holder(HolderType.RUN, "run-1")

    def both(at: datetime, change: datetime | None) -> None:
        clock.advance(M)
        workspaces = (locked(None), replace(locked(change, run), id="ws-2"))
        observation = Observation(
            source=Source.TFC, organization=ORG, server_now=at, workspaces=workspaces
        )
        memory.update([observation], at)

    both(NOW, None)
    both(NOW + 70 * M, NOW + M)
    assert memory.first_seen("ws-1", "user-bob") == NOW
    assert memory.first_seen("ws-2", "run-1") == NOW


def test_a_change_time_ahead_of_the_server_clock_counts_as_now() -> None:
    clock = FakeClock()
    memory = Memory(clock=clock)
    watch(memory, clock, NOW, locked(None))
    watch(memory, clock, NOW + M, locked(NOW + timedelta(days=1)))
    assert memory.first_seen("ws-1", "user-bob") == NOW + M


def test_the_gauge_shows_the_last_activity() -> None:
    clock = FakeClock()
    memory = Memory(clock=clock)
    watch(memory, clock, NOW, locked(None))
    observation = watch(memory, clock, NOW + 10 * M, locked(NOW + 5 * M))
    metrics = Metrics()
    locks = decide([observation], POLICY, memory, NOW + 10 * M).locks
    metrics.lock_series.show(LockPicture(locks=locks))
    value = metrics.registry.get_sample_value(
        "tfc_watchdog_lock_last_activity_timestamp_seconds",
        {"source": "tfc", "organization": ORG, "workspace": "network", "holder_type": "user"},
    )
    assert value == (NOW + 5 * M).timestamp()


def document(change: Any) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "name": "network",
        "locked": True,
        "locked-reason": "",
        "tag-names": [],
        "permissions": {"can-force-unlock": True},
    }
    if change is not ...:
        attributes["latest-change-at"] = change
    return {
        "data": {
            "id": "ws-1",
            "type": "workspaces",
            "attributes": attributes,
            "relationships": {"locked-by": {"data": {"id": "user-bob", "type": "users"}}},
        },
        "included": [{"id": "user-bob", "type": "users", "attributes": {"username": "bob"}}],
    }


def test_latest_change_at_is_parsed_absent_is_unknown_and_unreadable_is_a_problem() -> None:
    parsed = parse_workspace_document(document("2025-06-01T12:55:00.123Z"), ORG)
    assert parsed.latest_change_at == datetime(2025, 6, 1, 12, 55, 0, 123000, tzinfo=UTC)
    assert "latest-change-at" not in dict(parsed.problems)
    for absent in (..., None):
        assert parse_workspace_document(document(absent), ORG).latest_change_at is None
    for bad in ("yesterday", 7, {"at": 1}):
        unreadable = parse_workspace_document(document(bad), ORG)
        assert unreadable.latest_change_at is None
        problem = dict(unreadable.problems)["latest-change-at"]
        # A problem blocks action on the workspace: an age it could have shortened is unsure.
        assert problem in POLICY.unchecked(unreadable)
