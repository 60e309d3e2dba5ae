"""Budgets and observation gaps as properties over random worlds (see world.py).

The same worlds, policies and changes as test_safety.py, driven through the real cycle
against the real simulator app, with two things added:

- The watchdog's own clock (memory.Clock) follows the simulated clock, so the time between
  two cycles is real time for the watchdog too: a cycle 3 h after the last one is a 3 h gap
  in its observation, and an hour later its hourly budget has slid.
- Some POSTs reach the server (which performs them) and then time out, and some kill the
  process right after reaching the server, before its answer is recorded; the next cycle is
  then a new process over the same state file.

The properties judge every POST that reached the simulator by their own arithmetic on the
recorded world: (a) an unlock or force-unlock only after the lock was seen continuously (no
gap longer than the allowed one) for its threshold; (b) POSTs sent, including timed-out and
killed ones, never exceed the per-cycle and per-hour budgets.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from tests.properties.profile import PROPERTY
from tests.properties.world import (
    ORG,
    T0,
    Case,
    Harness,
    Recorder,
    RunSpec,
    Trace,
    WorkspaceSpec,
    _Interposer,
    cases,
    enforcing_case,
    start_process,
)
from tests.support.clock import FakeClock
from watchdog.cycle import CycleRunner
from watchdog.memory import Memory
from watchdog.model import Holder, HolderType, Observation, Run, Source, Workspace
from watchdog.policy import Policy
from watchdog.simulator.state import World
from watchdog.sources.tfc.client import TfcClient

HOUR = timedelta(hours=1)
# allowed_gap(interval) for the worlds' `interval: 60s`, written out: the oracle does not
# import the arithmetic it judges.
ALLOWED_GAP = timedelta(seconds=2 * 60 + 30)
UNLOCKS = ("unlock", "force-unlock")

# Advances around the allowed gap (150 s), so that continuous observation and gaps both occur.
advances = st.sampled_from([120, 0, 60, 150, 120, 150, 151, 300, 3600])
post_faults = st.lists(st.sampled_from(["ok", "ok", "timeout", "kill"]), max_size=6).map(tuple)


class Killed(BaseException):
    """The process died (SIGKILL) with a POST on the wire: nothing after it runs."""


# Thresholds a lock can reach within a few cycles of these advances, and budgets small enough
# to be reached: most examples should send a POST, and many should hit a budget.
lock_stale = st.sampled_from([60, 120, 300])
fast_lock_stale = st.sampled_from([1, 60])
per_hour = st.sampled_from([2, 1, 3, 10, 0])


@st.composite
def gap_cases(draw: st.DrawFn) -> tuple[Case, tuple[str, ...]]:
    case = draw(cases(max_cycles=6))
    cycles = tuple(replace(cycle, advance=draw(advances)) for cycle in case.cycles)
    case = replace(
        case,
        cycles=cycles,
        lock_stale_after=draw(lock_stale),
        fast_lock_stale_after=draw(fast_lock_stale),
        max_per_hour=draw(per_hour),
    )
    return case, draw(post_faults)


# Worlds with more to do than the budgets allow: stuck runs (cancel, then force-cancel and
# discard as the clock moves) and stale-able user locks, few of them protected.
_actionable = st.sampled_from(
    [
        ("run", None),
        ("run", None),
        ("lock", ("alice", "Locked by Terraform")),
        ("lock", ("bob", "")),
        ("lock", ("devs", "Locked by Terraform")),
        ("lock", ("alice", "maintenance window")),
    ]
)
_busy_changes = st.sampled_from(["none"] * 6 + ["released", "holder"])
_fault_lists = st.lists(st.sampled_from(["timeout", "kill", "ok"]), max_size=8).map(tuple)


@st.composite
def busy_cases(draw: st.DrawFn) -> tuple[Case, tuple[str, ...]]:
    base, _ = draw(gap_cases())
    specs = []
    for index in range(draw(st.integers(2, 4))):
        kind, lock = draw(_actionable)
        run = None
        if kind == "run":
            run = RunSpec(
                status=draw(st.sampled_from(["applying", "planning", "plan_queued", "pending"])),
                age=9 * 3600,
                hangs_on_cancel=draw(st.booleans()),
                canceled_ago=draw(st.sampled_from([None, None, 301])),
            )
        specs.append(WorkspaceSpec(f"dev-{index}", (), lock, run))
    count = len(specs)
    cycles = tuple(
        replace(
            cycle,
            changes=tuple(draw(_busy_changes) for _ in specs),
            corrupt=frozenset(i for i in cycle.corrupt if i < count),
            corrupt_reread=frozenset(i for i in cycle.corrupt_reread if i < count),
        )
        for cycle in base.cycles
    )
    case = replace(
        base,
        workspaces=tuple(specs),
        token="admin",
        dry_run=False,
        max_per_cycle=draw(st.sampled_from([1, 2, 3])),
        max_per_hour=draw(st.sampled_from([1, 2, 3])),
        default_actions=("cancel", "force_cancel", "discard", "force_unlock"),
        run_stuck_after=3600,
        protect_glob=False,
        cycles=cycles,
    )
    return case, draw(_fault_lists)


class _SimTiedClock:
    """memory.Clock on the simulated clock: the watchdog's wall clock and tick clock both."""

    def __init__(self, world: World, origin: datetime) -> None:
        self._world = world
        self._origin = origin

    def wall(self) -> datetime:
        return self._world.now()

    def ticks(self) -> float:
        return (self._world.now() - self._origin).total_seconds()


class _FaultyPosts(httpx.AsyncBaseTransport):
    """In front of the recorder: the n-th POST reaches the server (recorded, performed) and
    then, by `faults[n]`, is answered, times out, or kills the process."""

    def __init__(self, inner: Recorder, faults: tuple[str, ...]) -> None:
        self._inner = inner
        self._faults = faults
        self.sent = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if request.method != "POST":
            return response
        fault = self._faults[self.sent] if self.sent < len(self._faults) else "ok"
        self.sent += 1
        if fault == "timeout":
            raise httpx.ReadTimeout("no answer", request=request)
        if fault == "kill":
            raise Killed
        return response


class GapHarness(Harness):
    """world.Harness (one simulator app and event loop for every example) with the watchdog's
    clock tied to the simulated one and faults on POSTs, which may kill the process."""

    _faults: tuple[str, ...] = ()
    _clock: _SimTiedClock
    _transport: _FaultyPosts

    def run(self, case: Case, faults: tuple[str, ...] = ()) -> Trace:
        self._faults = faults
        return super().run(case)

    def _load(self, case: Case) -> tuple[World, Trace]:
        world, trace = super()._load(case)
        # One clock and one count of POSTs per example, across its processes.
        self._clock = _SimTiedClock(world, world.now())
        self._transport = _FaultyPosts(self.recorder, self._faults)
        return world, trace

    def _start(self, token: str, policy: Policy) -> tuple[TfcClient, CycleRunner, _Interposer]:
        # Every read a full one, whatever the case's `full_scan_interval`: the gaps judged
        # here are the cycles' (ALLOWED_GAP), not the full walks'.
        return start_process(
            token,
            self._transport,
            self.state_file,
            full_scan_interval=timedelta(0),
            clock=self._clock,
        )

    async def _cycle(
        self, runner: CycleRunner, interposer: _Interposer, policy: Policy, trace: Trace
    ) -> bool:
        try:
            await runner.run_cycle(policy)
        except Killed:
            # SIGKILL: the process is gone, its memory with it; the next cycle is a new
            # process over the state file as it was on disk.
            trace.events.append("killed")
            return False
        return True


@pytest.fixture(scope="module")
def gap_harness(state_dir: Path) -> Iterator[GapHarness]:
    harness = GapHarness(state_dir)
    try:
        yield harness
    finally:
        harness.close()


def _run(harness: GapHarness, case: Case, faults: tuple[str, ...]) -> Trace:
    trace = harness.run(case, faults)
    event(f"POSTs sent: {min(len(trace.posts), 3)}{'+' if len(trace.posts) >= 3 else ''}")
    for post in trace.posts:
        event(f"POST {post.kind}")
    if "killed" in trace.events:
        event("a process was killed with a POST in flight")
    return trace


def _continuous_since(
    trace: Trace, workspace_id: str, holder: tuple[str, str], cycle: int
) -> tuple[datetime, int] | None:
    """(first sighting, sightings) of the unbroken observation of this lock that ends with
    the list read of `cycle`, by the oracle's own reading of the recorded world; None when
    that read did not show it."""
    observed = trace.observed

    def sighted(number: int) -> datetime | None:
        snapshot = observed.get(number, {}).get(workspace_id)
        if snapshot is None or workspace_id in trace.corrupted.get(number, set()):
            return None
        return snapshot.at if snapshot.holder == holder else None

    last = sighted(cycle)
    if last is None:
        return None
    start, count = last, 1
    for number in range(cycle - 1, -1, -1):
        if workspace_id in trace.corrupted.get(number, set()):
            continue  # unreadable: neither a sighting nor a sign of release
        at = sighted(number)
        if at is None or start - at > ALLOWED_GAP:
            break  # released (or someone else's), or a gap: the observation starts after it
        start, count = at, count + 1
    return start, count


@PROPERTY
@given(st.one_of(gap_cases(), busy_cases()))
def test_no_unlock_across_a_gap_and_every_post_sent_within_the_budgets(
    gap_harness: GapHarness, drawn: tuple[Case, tuple[str, ...]]
) -> None:
    """One simulation per example (worlds with gaps, and busy ones with more to do than the
    budgets allow; both with timeouts and kills), judged by both invariants below."""
    case, faults = drawn
    trace = _run(gap_harness, case, faults)
    no_unlock_of_a_lock_whose_observation_had_a_gap_longer_than_allowed(case, trace)
    posts_sent_including_timed_out_and_killed_ones_stay_within_the_budgets(case, trace)


def no_unlock_of_a_lock_whose_observation_had_a_gap_longer_than_allowed(
    case: Case, trace: Trace
) -> None:
    for post in trace.posts:
        if post.kind not in UNLOCKS:
            continue
        assert post.before.holder is not None, post
        seen = _continuous_since(trace, post.workspace_id, post.before.holder, post.cycle)
        assert seen is not None, f"unlocked a lock this cycle's read did not show: {post}"
        first, sightings = seen
        _, threshold = case.rule_of(post.before.tags)
        assert sightings >= 2, post
        assert post.at - first >= timedelta(seconds=threshold), (
            f"{post.kind} after {post.at - first} of continuous observation, threshold {threshold}s"
        )


def posts_sent_including_timed_out_and_killed_ones_stay_within_the_budgets(
    case: Case, trace: Trace
) -> None:
    if case.dry_run:
        assert trace.posts == []
    for cycle in range(len(case.cycles)):
        assert len([p for p in trace.posts if p.cycle == cycle]) <= case.max_per_cycle
    # Every POST that reached the server counts, whatever its answer or the process's fate.
    for post in trace.posts:
        window = [p for p in trace.posts if post.at - HOUR <= p.at <= post.at]
        assert len(window) <= case.max_per_hour, [(p.at, p.kind) for p in window]


# --- the harness is not vacuous -------------------------------------------------------------


def _user_lock_case(advances: tuple[int, ...], *, per_hour: int = 10) -> Case:
    workspaces = (WorkspaceSpec("dev-0", (), ("alice", "Locked by Terraform"), None),)
    return enforcing_case(
        workspaces,
        advances,
        max_per_hour=per_hour,
        default_actions=("force_unlock",),
        lock_stale_after=300,
    )


def test_the_harness_sees_a_lock_watched_continuously_unlocked(gap_harness: GapHarness) -> None:
    # Seen at 0, 150, 300 and 450 s: older than its 300 s threshold at the last one.
    trace = gap_harness.run(_user_lock_case((0, 150, 150, 150)), ())
    assert [(p.kind, p.cycle) for p in trace.posts] == [("force-unlock", 3)]


def test_the_harness_sees_a_gap_restart_the_age(gap_harness: GapHarness) -> None:
    # The same, but 151 s between the first two sightings: the age starts over at cycle 1
    # and passes the threshold only at cycle 4.
    trace = gap_harness.run(_user_lock_case((0, 151, 150, 150, 150)), ())
    assert [(p.kind, p.cycle) for p in trace.posts] == [("force-unlock", 4)]


def _stuck_runs_case(faults_cycles: int) -> Case:
    workspaces = tuple(
        WorkspaceSpec(f"dev-{n}", (), None, RunSpec("applying", 9 * 3600, True, None))
        for n in range(4)
    )
    return enforcing_case(
        workspaces, (60,) * faults_cycles, max_per_hour=2, default_actions=("cancel",)
    )


def test_the_harness_sees_timeouts_and_kills_counted(gap_harness: GapHarness) -> None:
    trace = gap_harness.run(_stuck_runs_case(4), ("kill", "timeout", "kill"))
    assert trace.events.count("killed") == 1
    assert [p.kind for p in trace.posts] == ["cancel", "cancel"]  # the budget: 2 per hour


# --- continuous observation with two-tier reads ----------------------------------------------

# With `tfc.full_scan_interval`, fast reads between full walks list only the workspaces whose
# current run is not final: a run-held lock there is sighted by every read; a user/team lock,
# or a run lock whose run is final, only by the full walks. Written out, as ALLOWED_GAP: the
# first keep the cycles' gap (2 x interval + 30 s), the others the full walks' (2 x
# max(interval, full_scan_interval) + 30 s).
FULL_SCAN_INTERVAL = timedelta(minutes=10)
FULL_WALK_GAP = timedelta(seconds=2 * 600 + 30)
USER_LOCKED = "ws-user"
RUN_LOCKED = "ws-run"
ORPHAN_LOCKED = "ws-orphan"
ALICE = Holder(HolderType.USER, "user-alice", "alice")
RUN = Holder(HolderType.RUN, "run-applying", "run-applying")
ORPHAN = Holder(HolderType.RUN, "run-errored", "run-errored")


@dataclass(frozen=True)
class TwoTierRead:
    """One cycle: how long after the last, which read (or none: the cycle failed or the
    process was down), and whether each lock is held."""

    advance: int
    kind: str  # "full", "fast" or "missed"
    user_lock: bool
    run_lock: bool
    orphan_lock: bool = True


# Advances on both sides of both gaps: the cycles' (150 s) and the full walks' (1230 s).
_two_tier_advances = st.sampled_from([60, 60, 120, 150, 151, 300, 600, 1230, 1231, 3600])
two_tier_reads = st.lists(
    st.builds(
        TwoTierRead,
        advance=_two_tier_advances,
        kind=st.sampled_from(["fast", "fast", "fast", "full", "full", "missed"]),
        user_lock=st.sampled_from([True, True, True, False]),
        run_lock=st.sampled_from([True, True, True, False]),
        orphan_lock=st.sampled_from([True, True, True, False]),
    ),
    min_size=1,
    max_size=20,
)


def _workspace(ws_id: str, holder: Holder, held: bool, run: Run | None = None) -> Workspace:
    return Workspace(
        organization=ORG,
        id=ws_id,
        name=ws_id,
        locked=held,
        holder=holder if held else None,
        current_run=run,
    )


def _two_tier_observation(read: TwoTierRead, now: datetime) -> Observation:
    """The observation the TFC source builds for this read: a full walk lists every
    workspace; a fast read lists the one whose current run is active (the run's, locked or
    not) and carries the other locked ones from the last full walk, unread."""
    applying = Run(id=RUN.id, status="applying", created_at=T0)
    run_ws = _workspace(RUN_LOCKED, RUN, read.run_lock, applying)
    user_ws = _workspace(USER_LOCKED, ALICE, read.user_lock)
    # A run that errored without letting go of its lock: the fast path does not list it.
    errored = Run(id=ORPHAN.id, status="errored", created_at=T0)
    orphan_ws = _workspace(ORPHAN_LOCKED, ORPHAN, read.orphan_lock, errored)
    if read.kind == "full":
        return Observation(
            source=Source.TFC,
            organization=ORG,
            server_now=now,
            workspaces=(run_ws, user_ws, orphan_ws),
            listed_ids=frozenset({RUN_LOCKED, USER_LOCKED, ORPHAN_LOCKED}),
            full_read_every=FULL_SCAN_INTERVAL,
        )
    carried = (
        _workspace(USER_LOCKED, ALICE, True),
        replace(orphan_ws, locked=True, holder=ORPHAN),
    )
    return Observation(
        source=Source.TFC,
        organization=ORG,
        server_now=now,
        workspaces=(run_ws, *carried),
        listed_ids=frozenset({RUN_LOCKED}),
        fast=True,
    )


@dataclass
class _Watched:
    """The oracle's own record of one lock: first sighting, sightings, last sighting."""

    first: datetime
    sightings: int
    last: datetime


def _oracle_sees(
    watched: _Watched | None, now: datetime, *, held: bool, allowed: timedelta
) -> _Watched | None:
    """One read that looks at the lock: a sighting (continuing the observation when the
    last sighting is at most `allowed` ago, else starting over), or its release."""
    if not held:
        return None
    if watched is None or now - watched.last > allowed:
        return _Watched(now, 1, now)
    return _Watched(watched.first, watched.sightings + 1, now)


@PROPERTY
@given(two_tier_reads)
def test_two_tier_reads_keep_each_locks_observation_to_its_own_gap(
    reads: list[TwoTierRead],
) -> None:
    """Memory's first sighting and sighting count of each lock, after every cycle, equal
    the oracle's: a user/team lock (and a run lock whose run is final) is sighted by full
    walks only and stays continuous across up to 2 x max(interval, full_scan_interval) +
    30 s; a run lock the fast path lists is sighted by every read and continuous across at
    most 2 x interval + 30 s, however the reads alternate. Memory using the short gap for
    the full-walk-only locks, or the long one for the listed run lock, or counting a fast
    read as a sighting (or a gap) of a lock it did not read, fails here."""
    clock = FakeClock(T0)
    memory = Memory(clock=clock)
    now = T0
    user: _Watched | None = None
    run: _Watched | None = None
    orphan: _Watched | None = None
    for read in reads:
        clock.advance(timedelta(seconds=read.advance))
        now += timedelta(seconds=read.advance)
        if read.kind == "missed":
            memory.update([], now, max_gap=ALLOWED_GAP)
        else:
            memory.update([_two_tier_observation(read, now)], now, max_gap=ALLOWED_GAP)
            run = _oracle_sees(run, now, held=read.run_lock, allowed=ALLOWED_GAP)
            if read.kind == "full":
                user = _oracle_sees(user, now, held=read.user_lock, allowed=FULL_WALK_GAP)
                orphan = _oracle_sees(orphan, now, held=read.orphan_lock, allowed=FULL_WALK_GAP)
        locks = (
            (ALICE, USER_LOCKED, user),
            (RUN, RUN_LOCKED, run),
            (ORPHAN, ORPHAN_LOCKED, orphan),
        )
        for holder, workspace_id, watched in locks:
            expected = (None, 0) if watched is None else (watched.first, watched.sightings)
            actual = (
                memory.first_seen(workspace_id, holder.id),
                memory.sightings(workspace_id, holder.id),
            )
            assert actual == expected, (workspace_id, now - T0)
    event(f"user lock sightings at the end: {min(user.sightings, 3) if user else 0}")
    event(f"run lock sightings at the end: {min(run.sightings, 3) if run else 0}")


def test_two_tier_oracle_is_not_vacuous() -> None:
    """The two gaps differ where it matters: a run lock seen 300 s apart restarts while a
    user lock seen by full walks 1230 s apart does not, and 1231 s restarts it."""
    reads = [
        TwoTierRead(0, "full", True, True),
        TwoTierRead(300, "full", True, True),
        TwoTierRead(930, "full", True, True),
        TwoTierRead(1231, "full", True, True),
    ]
    seen: list[tuple[int, int]] = []
    user: _Watched | None = None
    run: _Watched | None = None
    now = T0
    for read in reads:
        now += timedelta(seconds=read.advance)
        user = _oracle_sees(user, now, held=True, allowed=FULL_WALK_GAP)
        run = _oracle_sees(run, now, held=True, allowed=ALLOWED_GAP)
        seen.append((user.sightings, run.sightings))
    assert seen == [(1, 1), (2, 1), (3, 1), (1, 1)]
