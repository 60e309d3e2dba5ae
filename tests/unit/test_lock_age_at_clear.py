"""Time to clear: `tfc_watchdog_lock_age_at_clear_seconds{source,cleared_by}` is observed once
per lock when it goes away, with the age it had when last seen, and `cleared_by="watchdog"`
only when a POST of ours since that sighting may have ended it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from tests.support.actors import FakeActor
from tests.support.builders import BOB, NOW, ORG, M, locked_workspace, planned_action
from tests.support.clock import FakeClock
from watchdog.cycle import CycleRunner
from watchdog.memory import ClearedLock, Memory
from watchdog.metrics import Metrics
from watchdog.model import Observation, Outcome, Source, Workspace
from watchdog.policy import Policy


def seen(workspace: Workspace, at: datetime, *, complete: bool = True) -> list[Observation]:
    return [
        Observation(
            source=Source.TFC,
            organization=ORG,
            server_now=at,
            workspaces=(workspace,) if workspace.locked else (),
            listed_ids=frozenset({workspace.id}) if complete else frozenset(),
            complete=complete,
        )
    ]


def cycles(memory: Memory, clock: FakeClock, count: int) -> None:
    """`count` cycles a minute apart that each see the lock."""
    for n in range(count):
        if n:
            clock.advance(M)
        assert memory.update(seen(locked_workspace(), NOW + n * M), NOW + n * M) == []


# --- memory: which locks are gone, once, and by whose hand ------------------------------------


def test_a_lock_that_went_away_by_itself_is_reported_once_with_its_last_seen_age() -> None:
    clock = FakeClock()
    memory = Memory(clock=clock)
    cycles(memory, clock, 3)
    clock.advance(M)

    gone = memory.update(seen(locked_workspace(None), NOW + 3 * M), NOW + 3 * M)
    clock.advance(M)
    again = memory.update(seen(locked_workspace(None), NOW + 4 * M), NOW + 4 * M)

    assert gone == [ClearedLock("tfc", "ws-1", "user-alice", 2 * M, by_watchdog=False)]
    assert again == []


def test_a_lock_our_post_ended_is_the_watchdogs() -> None:
    clock = FakeClock()
    memory = Memory(clock=clock)
    cycles(memory, clock, 3)
    record = memory.begin_action(planned_action())  # act, in the cycle of the last sighting
    assert record is not None
    memory.finish_action(record, Outcome.DONE)
    clock.advance(M)

    [gone] = memory.update(seen(locked_workspace(None), NOW + 3 * M), NOW + 3 * M)

    assert gone.by_watchdog is True
    assert gone.age == 2 * M


def test_a_post_that_may_have_acted_counts_and_one_that_did_nothing_does_not() -> None:
    for outcome, ours in [
        (Outcome.UNKNOWN, True),
        (None, True),  # sent and never completed: the process was killed in flight
        (Outcome.FAILED, False),
        (Outcome.FORBIDDEN, False),
        (Outcome.SKIPPED_CHANGED, False),  # a 409
    ]:
        clock = FakeClock()
        memory = Memory(clock=clock)
        cycles(memory, clock, 2)
        record = memory.begin_action(planned_action())
        assert record is not None
        if outcome is not None:
            memory.finish_action(record, outcome)
        clock.advance(M)
        [gone] = memory.update(seen(locked_workspace(None), NOW + 2 * M), NOW + 2 * M)
        assert gone.by_watchdog is ours, outcome


def test_a_post_before_the_last_sighting_did_not_end_the_lock() -> None:
    clock = FakeClock()
    memory = Memory(clock=clock)
    cycles(memory, clock, 1)
    record = memory.begin_action(planned_action())  # it answered done, yet the lock stayed
    assert record is not None
    memory.finish_action(record, Outcome.DONE)
    clock.advance(M)
    memory.update(seen(locked_workspace(), NOW + M), NOW + M)
    clock.advance(M)

    [gone] = memory.update(seen(locked_workspace(None), NOW + 2 * M), NOW + 2 * M)

    assert gone.by_watchdog is False


def test_a_new_holder_clears_the_old_lock_and_a_gap_or_a_partial_read_clears_nothing() -> None:
    clock = FakeClock()
    memory = Memory(clock=clock)
    cycles(memory, clock, 2)
    clock.advance(M)
    [gone] = memory.update(seen(locked_workspace(BOB), NOW + 2 * M), NOW + 2 * M)
    assert (gone.holder_id, gone.by_watchdog) == ("user-alice", False)

    # Bob's lock, watched again after three hours: its age restarts; it did not go away.
    clock.advance(timedelta(hours=3))
    assert memory.update(seen(locked_workspace(BOB), NOW + 3 * M), NOW + 3 * M) == []
    # A read that failed says nothing about the lock.
    clock.advance(M)
    assert memory.update(seen(locked_workspace(None), NOW + 4 * M, complete=False), NOW) == []


# --- the cycle observes the histogram ---------------------------------------------------------


class World:
    """A source whose one workspace is locked until `release()`."""

    def __init__(self) -> None:
        self.workspace = locked_workspace()
        self.now = NOW

    def release(self) -> None:
        self.workspace = locked_workspace(None)

    async def observe(self) -> list[Observation]:
        return seen(self.workspace, self.now)


def histogram(metrics: Metrics, cleared_by: str) -> tuple[float | None, float | None]:
    labels = {"source": "tfc", "cleared_by": cleared_by}
    name = "tfc_watchdog_lock_age_at_clear_seconds"
    return (
        metrics.registry.get_sample_value(f"{name}_count", labels),
        metrics.registry.get_sample_value(f"{name}_sum", labels),
    )


@dataclass
class Cycles:
    """The daemon's part: its policy, handed to each cycle."""

    runner: CycleRunner
    policy: Policy

    async def run_cycle(self) -> None:
        await self.runner.run_cycle(self.policy)


def watchdog(actions: list[str]) -> tuple[Cycles, World, Metrics, FakeClock]:
    policy = Policy.model_validate(
        {
            "dry_run": False,
            "tfc": {"organizations": [ORG]},
            "defaults": {"lock_stale_after": "2m", "actions": actions},
        }
    )
    clock = FakeClock()
    memory = Memory(clock=clock)
    world = World()
    metrics = Metrics()
    runner = CycleRunner(
        sources=[world],
        memory=memory,
        metrics=metrics,
        # act.Actor's part: the POST recorded write-ahead, and the world's lock goes away.
        actor=FakeActor(memory, effect=lambda _: world.release()),
    )
    return Cycles(runner, policy), world, metrics, clock


async def run_cycles(dog: Cycles, world: World, clock: FakeClock, count: int) -> None:
    for _ in range(count):
        await dog.run_cycle()
        clock.advance(M)
        world.now += M


async def test_the_cycle_observes_a_lock_the_watchdog_cleared_once_as_the_watchdogs() -> None:
    dog, world, metrics, clock = watchdog(["force_unlock"])
    assert histogram(metrics, "watchdog") == (0, 0)  # exported before it happens

    # Seen at 0 to 3 minutes: past its 2m threshold at 3 minutes, force-unlocked then.
    await run_cycles(dog, world, clock, 4)
    assert world.workspace.locked is False
    await run_cycles(dog, world, clock, 3)

    assert histogram(metrics, "watchdog") == (1, 180)
    assert histogram(metrics, "other") == (0, 0)


async def test_the_cycle_observes_a_lock_released_by_its_holder_as_other() -> None:
    dog, world, metrics, clock = watchdog([])  # the watchdog may do nothing
    await run_cycles(dog, world, clock, 5)
    world.release()
    await run_cycles(dog, world, clock, 3)

    assert histogram(metrics, "other") == (1, 240)
    assert histogram(metrics, "watchdog") == (0, 0)
