"""Memory with two kinds of TFC reads: full reads (every workspace) and fast reads (only the
workspaces whose current run is not final), as two-tier polling alternates them."""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.support.builders import NOW, M
from tests.support.clock import FakeClock
from watchdog.memory import Memory, allowed_gap
from watchdog.model import Holder, HolderType, Observation, Run, Source, Workspace

FULL_EVERY = timedelta(minutes=10)
GAP = allowed_gap(M)  # the cycle's gap (interval 60 s)
ALICE = Holder(HolderType.USER, "user-alice", "alice")
BOB = Holder(HolderType.USER, "user-bob", "bob")
RUN = Holder(HolderType.RUN, "run-1", "applying")


def ws(wid: str, holder: Holder | None = ALICE, *, active_run: bool = False) -> Workspace:
    run = Run(id="run-1", status="applying", created_at=NOW) if active_run else None
    return Workspace(
        organization="acme",
        id=wid,
        name=f"name-{wid}",
        locked=holder is not None,
        holder=holder,
        current_run=run,
    )


def full(*workspaces: Workspace, at: datetime = NOW) -> Observation:
    return Observation(
        source=Source.TFC,
        organization="acme",
        server_now=at,
        workspaces=workspaces,
        listed_ids=frozenset(w.id for w in workspaces),
        full_read_every=FULL_EVERY,
    )


def fast(
    *listed: Workspace, carried: tuple[Workspace, ...] = (), at: datetime = NOW
) -> Observation:
    return Observation(
        source=Source.TFC,
        organization="acme",
        server_now=at,
        workspaces=(*listed, *carried),
        listed_ids=frozenset(w.id for w in listed),
        fast=True,
    )


class Cycles:
    """Cycles one interval apart: a full read every ten, fast reads between."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.memory = Memory(clock=self.clock)
        self.now = NOW

    def run(self, observation: Observation) -> None:
        self.memory.update([observation], self.now, max_gap=GAP)
        self.clock.advance(M)
        self.now += M


def test_a_fast_read_neither_sights_nor_releases_a_user_lock() -> None:
    cycles = Cycles()
    cycles.run(full(ws("ws-1")))
    assert cycles.memory.sightings("ws-1", "user-alice") == 1
    # Carried (not listed), listed with the lock, or not there at all: no sighting, no
    # release, first seen unchanged.
    cycles.run(fast(carried=(ws("ws-1"),)))
    cycles.run(fast(ws("ws-1", active_run=True)))
    cycles.run(fast())
    assert cycles.memory.sightings("ws-1", "user-alice") == 1
    assert cycles.memory.first_seen("ws-1", "user-alice") == NOW
    assert len(cycles.memory) == 1


def test_a_fast_read_never_creates_a_user_lock_entry() -> None:
    cycles = Cycles()
    cycles.run(full())
    cycles.run(fast(ws("ws-1", BOB, active_run=True)))
    assert cycles.memory.sightings("ws-1", "user-bob") == 0
    assert cycles.memory.first_seen("ws-1", "user-bob") is None


def test_a_workspace_a_fast_read_lists_unlocked_releases_its_lock() -> None:
    """A listed workspace was read whole: a lock it no longer shows is gone (the age
    restarts, the safe way). Only absence from the page says nothing."""
    cycles = Cycles()
    cycles.run(full(ws("ws-1")))
    cycles.run(fast(ws("ws-1", None, active_run=True)))
    assert cycles.memory.sightings("ws-1", "user-alice") == 0


def test_user_locks_count_full_reads_and_keep_their_age_across_the_fast_reads_between() -> None:
    cycles = Cycles()
    for minute in range(21):
        if minute % 10 == 0:
            cycles.run(full(ws("ws-1"), at=cycles.now))
        else:
            cycles.run(fast(carried=(ws("ws-1"),), at=cycles.now))
    # Three full reads, ten minutes apart: continuous, three sightings, aged from the first.
    assert cycles.memory.sightings("ws-1", "user-alice") == 3
    assert cycles.memory.first_seen("ws-1", "user-alice") == NOW


def test_full_reads_further_apart_than_twice_the_full_scan_interval_restart_the_age() -> None:
    cycles = Cycles()
    cycles.run(full(ws("ws-1")))
    # The full reads fail for a while (fast reads go on): 2 x 10 min + 30 s is exceeded.
    cycles.clock.advance(allowed_gap(FULL_EVERY))
    cycles.now += allowed_gap(FULL_EVERY)
    cycles.run(full(ws("ws-1"), at=cycles.now))
    assert cycles.memory.sightings("ws-1", "user-alice") == 1
    assert cycles.memory.first_seen("ws-1", "user-alice") == cycles.now - M


def test_without_a_full_scan_interval_the_gap_is_the_cycles() -> None:
    cycles = Cycles()
    read = full(ws("ws-1"))
    every_cycle = Observation(
        source=read.source,
        organization=read.organization,
        server_now=NOW,
        workspaces=read.workspaces,
        listed_ids=read.listed_ids,
    )
    cycles.run(every_cycle)
    cycles.clock.advance(GAP)
    cycles.now += GAP
    cycles.run(every_cycle)
    assert cycles.memory.sightings("ws-1", "user-alice") == 1


def test_a_run_held_lock_is_sighted_by_every_fast_read_that_lists_it() -> None:
    cycles = Cycles()
    cycles.run(full(ws("ws-2", RUN, active_run=True)))
    for _ in range(3):
        cycles.run(fast(ws("ws-2", RUN, active_run=True)))
    assert cycles.memory.sightings("ws-2", "run-1") == 4
    # Listed unlocked (the run let go of it): gone.
    cycles.run(fast(ws("ws-2", None, active_run=True)))
    assert cycles.memory.sightings("ws-2", "run-1") == 0


def test_a_run_held_lock_absent_from_a_fast_read_is_kept_for_the_next_full_read() -> None:
    """A run that is final can still hold its lock: only the full walk lists it."""
    cycles = Cycles()
    final = Workspace(
        organization="acme",
        id="ws-3",
        name="name-ws-3",
        locked=True,
        holder=RUN,
        current_run=Run(id="run-1", status="errored", created_at=NOW),
    )
    cycles.run(full(final))
    for _ in range(9):
        cycles.run(fast(carried=(final,)))
    cycles.run(full(final, at=cycles.now))
    assert cycles.memory.sightings("ws-3", "run-1") == 2
    assert cycles.memory.first_seen("ws-3", "run-1") == NOW


def test_a_run_lock_the_fast_path_lists_keeps_the_cycles_gap_in_a_full_read() -> None:
    """Every read sights a run lock whose run is active: a full read 151 s after the last
    fast one is a gap for it (2 x 60 s + 30 s), not the full walks' 20 min 30 s."""
    cycles = Cycles()
    cycles.run(fast(ws("ws-2", RUN, active_run=True)))
    cycles.run(fast(ws("ws-2", RUN, active_run=True), at=cycles.now))
    cycles.clock.advance(timedelta(seconds=91))
    cycles.now += timedelta(seconds=91)
    cycles.run(full(ws("ws-2", RUN, active_run=True), at=cycles.now))
    assert cycles.memory.sightings("ws-2", "run-1") == 1
    assert cycles.memory.first_seen("ws-2", "run-1") == cycles.now - M
