"""Two-tier polling keeps the safety rules: a fast read (only the workspaces whose current run
is not final) never counts as a sighting, a gap or a release of a user/team lock it did not
read, and any non-final run the fast path failed to list switches its organization to full
walks (the self-check), whatever the server does with the filter."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from tests.properties.profile import PROPERTY
from tests.support.builders import NOW, M
from tests.support.clock import FakeClock
from tests.support.simulator import in_process_client
from watchdog.memory import Memory, allowed_gap
from watchdog.metrics import Metrics
from watchdog.model import (
    FINAL_STATUSES,
    NON_FINAL_STATUSES,
    Holder,
    HolderType,
    Observation,
    Run,
    Source,
    Workspace,
)
from watchdog.simulator.app import Simulator
from watchdog.simulator.scenario import load_text
from watchdog.sources.tfc.source import TfcSource

FULL_EVERY = timedelta(minutes=10)
HOLDERS = (
    Holder(HolderType.USER, "user-alice", "alice"),
    Holder(HolderType.TEAM, "team-ops", "ops"),
)
WORKSPACES = ("ws-1", "ws-2", "ws-3")


# --- Memory: fast reads and user/team locks -------------------------------------------------


@dataclass(frozen=True)
class Step:
    fast: bool
    # Per workspace: its true holder this cycle (None: unlocked) and, for a fast read,
    # whether the fast path lists it (it has an active run).
    holders: tuple[int | None, ...]
    listed: tuple[bool, ...]


steps = st.lists(
    st.builds(
        Step,
        fast=st.booleans(),
        holders=st.tuples(*(st.one_of(st.none(), st.sampled_from((0, 1))) for _ in WORKSPACES)),
        listed=st.tuples(*(st.booleans() for _ in WORKSPACES)),
    ),
    min_size=1,
    max_size=25,
)


def _workspace(wid: str, holder: int | None, *, active: bool) -> Workspace:
    run = Run(id=f"run-{wid}", status="applying", created_at=NOW) if active else None
    return Workspace(
        organization="acme",
        id=wid,
        name=wid,
        locked=holder is not None,
        holder=HOLDERS[holder] if holder is not None else None,
        current_run=run,
    )


def _observation(step: Step, carried: dict[str, Workspace], now: datetime) -> Observation:
    if not step.fast:
        workspaces = tuple(
            _workspace(wid, holder, active=False)
            for wid, holder in zip(WORKSPACES, step.holders, strict=True)
        )
        return Observation(
            source=Source.TFC,
            organization="acme",
            server_now=now,
            workspaces=workspaces,
            listed_ids=frozenset(WORKSPACES),
            full_read_every=FULL_EVERY,
        )
    listed = tuple(
        _workspace(wid, holder, active=True)
        for wid, holder, shown in zip(WORKSPACES, step.holders, step.listed, strict=True)
        if shown
    )
    ids = {ws.id for ws in listed}
    return Observation(
        source=Source.TFC,
        organization="acme",
        server_now=now,
        workspaces=(*listed, *(ws for wid, ws in carried.items() if wid not in ids)),
        listed_ids=frozenset(ids),
        fast=True,
    )


def _entries(memory: Memory) -> dict[tuple[str, str], tuple[datetime | None, int]]:
    return {
        (wid, holder.id): (memory.first_seen(wid, holder.id), memory.sightings(wid, holder.id))
        for wid in WORKSPACES
        for holder in HOLDERS
    }


@PROPERTY
@given(steps)
def test_a_fast_read_never_sights_or_ages_a_user_lock_and_releases_only_what_it_read(
    cycles: list[Step],
) -> None:
    clock = FakeClock()
    memory = Memory(clock=clock)
    now = NOW
    carried: dict[str, Workspace] = {}
    for step in cycles:
        before = _entries(memory)
        observation = _observation(step, carried, now)
        memory.update([observation], now, max_gap=allowed_gap(M))
        after = _entries(memory)
        if step.fast:
            for (wid, holder_id), (first_seen, sightings) in after.items():
                read = wid in observation.listed_ids
                previous = before[(wid, holder_id)]
                if (first_seen, sightings) == previous:
                    continue
                # The only change a fast read may make to a user/team lock: forget one on a
                # workspace it listed without that lock.
                index = WORKSPACES.index(wid)
                shown = step.holders[index]
                assert read
                assert shown is None or HOLDERS[shown].id != holder_id
                assert (first_seen, sightings) == (None, 0)
        else:
            carried = {ws.id: ws for ws in observation.workspaces if ws.locked}
            # A full read sights exactly the locks it shows.
            for wid, holder in zip(WORKSPACES, step.holders, strict=True):
                for index, candidate in enumerate(HOLDERS):
                    sightings = after[(wid, candidate.id)][1]
                    assert (sightings > 0) == (holder == index)
        clock.advance(M)
        now += M


# --- the self-check, against the simulator ----------------------------------------------------

STATUSES = (*NON_FINAL_STATUSES, *sorted(FINAL_STATUSES), "some_status_not_known_yet")
SERVICES = 6
# A small organization: a user lock (only full walks see it) and idle workspaces for runs.
SCENARIO = f"""
organizations:
  demo:
    teams: [{{name: owners, tokens: [demo-admin-token], access: admin}}]
    users: [{{name: alice, access: write}}]
    workspaces:
      - {{name: held, lock: {{by: alice, reason: "Locked by Terraform", age: 3h}}}}
      - generate: {{count: {SERVICES}, name: "service-{{n:02d}}-dev"}}
"""
service_runs = st.dictionaries(
    st.integers(min_value=1, max_value=SERVICES), st.sampled_from(STATUSES), max_size=SERVICES
)


async def _cycles(mode: str, runs: dict[int, str]) -> tuple[set[str], set[str], float, bool]:
    sim = Simulator.from_scenario(load_text(SCENARIO))
    sim.settings.rate_limit = 1e9
    sim.settings.current_run_filter = mode
    by_name = {ws.name: ws for ws in sim.world.workspaces.values()}
    for number, status in runs.items():
        run = sim.world.add_run(by_name[f"service-{number:02d}-dev"], "planning")
        run.status = status
    metrics = Metrics()
    now = [0.0]
    async with in_process_client(sim, metrics) as client:
        source = TfcSource(
            client, ["demo"], metrics, full_scan_interval=FULL_EVERY, clock=lambda: now[0]
        )
        await source.observe()
        now[0] = 60
        [fast] = await source.observe()
        now[0] = FULL_EVERY.total_seconds()
        [full] = await source.observe()
        now[0] += 60
        [following] = await source.observe()
    active = {ws.id for ws in full.workspaces if ws.current_run and not ws.current_run.is_final}
    listed = set(fast.listed_ids) if fast.fast else set(full.listed_ids)
    disabled = metrics.registry.get_sample_value(
        "tfc_watchdog_fast_path_disabled", {"organization": "demo"}
    )
    return active, listed, disabled or 0.0, following.fast


@PROPERTY
# (A server refusing comma lists is answered one request per status: the same lists, 25
# requests a read; tests/unit/test_tfc_two_tier.py covers it once.)
@given(st.sampled_from(("apply", "empty", "ignore")), service_runs)
def test_a_run_the_fast_path_missed_disables_it_and_a_faithful_one_stays_on(
    mode: str, runs: dict[int, str]
) -> None:
    active, listed, disabled, next_is_fast = asyncio.run(_cycles(mode, runs))
    missed = active - listed
    if missed or mode == "ignore":
        assert disabled == 1
        assert not next_is_fast  # full walks every cycle from then on
    if mode == "apply" and "some_status_not_known_yet" not in runs.values():
        assert not missed
        assert disabled == 0
        assert next_is_fast
