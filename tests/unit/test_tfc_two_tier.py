"""Two-tier polling against the real simulator app (in-process): the fast path between full
walks, the full walk's self-check, and the servers that get the filter wrong."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest
import structlog
from structlog.testing import capture_logs

from tests.support.clock import FakeClock
from tests.support.simulator import in_process_client
from watchdog.act import Actor
from watchdog.cycle import CycleRunner
from watchdog.memory import Memory
from watchdog.metrics import Metrics
from watchdog.model import NON_FINAL_STATUSES, HolderType, Observation, Run, Workspace
from watchdog.policy import Policy
from watchdog.simulator.app import Simulator
from watchdog.simulator.scenario import load_builtin
from watchdog.sources.tfc.source import TfcSource
from watchdog.sources.tfc.twotier import FAST_PATH_RECHECK, FastRead, OrganizationSchedule

FILTER = "filter[current-run][status]"
TEN_MINUTES = timedelta(minutes=10)
MINUTE = 60.0


@dataclass
class Harness:
    sim: Simulator
    source: TfcSource
    metrics: Metrics
    now: list[float]

    async def observe_at(self, seconds: float) -> Observation:
        self.now[0] = seconds
        self.sim.request_log.clear()
        [observation] = await self.source.observe()
        return observation

    def list_queries(self) -> list[dict[str, list[str]]]:
        return [
            parse_qs(entry["query"])
            for entry in self.sim.request_log
            if entry["path"].endswith("/workspaces") and entry["method"] == "GET"
        ]

    def filters(self) -> list[str | None]:
        return [query.get(FILTER, [None])[0] for query in self.list_queries()]

    def disabled(self) -> float | None:
        return self.metrics.registry.get_sample_value(
            "tfc_watchdog_fast_path_disabled", {"organization": "demo"}
        )

    def reads(self, kind: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "tfc_watchdog_read_requests_total", {"kind": kind}
        )
        return value or 0.0


async def _harness(full_scan_interval: timedelta) -> AsyncIterator[Harness]:
    sim = Simulator.from_scenario(load_builtin("demo"))
    # The client's limiter is off (1e9/s) so that the test does not wait; so is the server's
    # (the per-status fallback sends ~30 requests at once).
    sim.settings.rate_limit = 1e9
    metrics = Metrics()
    now = [0.0]
    async with in_process_client(sim, metrics) as client:
        source = TfcSource(
            client,
            ["demo"],
            metrics,
            full_scan_interval=full_scan_interval,
            clock=lambda: now[0],
        )
        yield Harness(sim, source, metrics, now)


@pytest.fixture
async def two_tier() -> AsyncIterator[Harness]:
    async for harness in _harness(TEN_MINUTES):
        yield harness


@pytest.fixture
async def every_cycle() -> AsyncIterator[Harness]:
    async for harness in _harness(timedelta(0)):
        yield harness


def _names(observation: Observation, ids: frozenset[str] | None = None) -> set[str]:
    return {ws.name for ws in observation.workspaces if ids is None or ws.id in ids}


def _workspace(sim: Simulator, name: str) -> Any:
    return next(ws for ws in sim.world.workspaces.values() if ws.name == name)


async def test_between_full_walks_only_workspaces_with_an_active_run_are_listed(
    two_tier: Harness,
) -> None:
    full = await two_tier.observe_at(0)
    assert not full.fast
    assert two_tier.filters() == [None]  # every workspace, one page of 100
    assert full.full_read_every == TEN_MINUTES
    assert len(full.listed_ids) == full.workspace_count == len(two_tier.sim.world.workspaces)

    fast = await two_tier.observe_at(MINUTE)
    assert fast.fast and fast.complete
    # One request, with every non-final status as a comma list.
    assert two_tier.filters() == [",".join(NON_FINAL_STATUSES)]
    assert two_tier.list_queries()[0]["include"] == ["current_run,locked_by,project"]
    # Listed: the workspaces whose current run is not final.
    assert _names(fast, fast.listed_ids) == {"payments-prod", "billing-staging"}
    # The user/team-locked workspaces of the full walk are carried (not read), so they are
    # still reported; the organization's size is the full walk's.
    assert {"legacy-network", "web-dev", "analytics-dev", "prod-core"} <= _names(fast)
    assert fast.workspace_count == full.workspace_count

    # At full_scan_interval (less the tolerance for a cycle starting a little early): full.
    again = await two_tier.observe_at(0.96 * TEN_MINUTES.total_seconds())
    assert not again.fast and two_tier.filters() == [None]
    assert two_tier.disabled() == 0
    assert (two_tier.reads("full"), two_tier.reads("fast")) == (2, 1)


async def test_full_scan_interval_zero_walks_every_workspace_every_cycle(
    every_cycle: Harness,
) -> None:
    for minute in range(3):
        observation = await every_cycle.observe_at(minute * MINUTE)
        assert not observation.fast
        assert observation.full_read_every == timedelta(0)
        assert every_cycle.filters() == [None]
    assert every_cycle.disabled() is None  # the fast path is not in use at all


async def test_a_carried_workspace_never_shows_a_run_the_fast_path_did_not_list(
    two_tier: Harness,
) -> None:
    """A user-locked workspace with an active run at the full walk, whose run then ended:
    it is carried without the old run, which must not be reported (or acted on) as stuck."""
    sim = two_tier.sim
    web = _workspace(sim, "web-dev")
    run = sim.world.add_run(web, "applying", age=timedelta(hours=9))
    await two_tier.observe_at(0)
    run.status = "applied"
    fast = await two_tier.observe_at(MINUTE)
    [carried] = [ws for ws in fast.workspaces if ws.name == "web-dev"]
    assert carried.id not in fast.listed_ids
    assert carried.locked and carried.holder is not None
    assert carried.holder.type is HolderType.USER
    assert carried.current_run is None


async def test_a_run_the_fast_path_missed_switches_the_organization_to_full_walks(
    two_tier: Harness,
) -> None:
    """A server answering the filter with an empty set (what an unknown value gets): the
    next full walk finds non-final runs the fast read did not list."""
    two_tier.sim.settings.current_run_filter = "empty"
    await two_tier.observe_at(0)
    fast = await two_tier.observe_at(MINUTE)
    assert fast.fast and not fast.listed_ids
    assert two_tier.disabled() == 0  # nothing to compare with yet
    with capture_logs() as logs:
        await two_tier.observe_at(TEN_MINUTES.total_seconds() + MINUTE)
        # Full walks every cycle from now on; logged once.
        for minute in range(2, 6):
            observation = await two_tier.observe_at(TEN_MINUTES.total_seconds() + minute * 60)
            assert not observation.fast
            assert two_tier.filters() == [None]
    disabled = [entry for entry in logs if entry["event"] == "tfc.fast_path_disabled"]
    assert len(disabled) == 1
    assert disabled[0]["missed"] == 2  # payments-prod's and billing-staging's runs
    assert disabled[0]["recheck_after"] == "1h"
    assert two_tier.disabled() == 1

    # After FAST_PATH_RECHECK the fast path is tried again (and checked again).
    two_tier.sim.settings.current_run_filter = "apply"
    later = TEN_MINUTES.total_seconds() + MINUTE + FAST_PATH_RECHECK.total_seconds()
    assert not (await two_tier.observe_at(later)).fast  # the full walk that re-enables
    assert (await two_tier.observe_at(later + MINUTE)).fast
    assert two_tier.disabled() == 0
    await two_tier.observe_at(later + TEN_MINUTES.total_seconds())  # checked: none missed
    assert two_tier.disabled() == 0


async def test_a_run_in_a_status_the_filter_does_not_name_disables_the_fast_path(
    two_tier: Harness,
) -> None:
    """Run statuses are an open set: a status this version does not know is non-final, is
    not in the filter, and so is only found by the full walk's self-check."""
    await two_tier.observe_at(0)
    run = two_tier.sim.world.add_run(_workspace(two_tier.sim, "service-01-dev"), "planning")
    run.status = "some_new_status"
    await two_tier.observe_at(MINUTE)
    await two_tier.observe_at(TEN_MINUTES.total_seconds())
    assert two_tier.disabled() == 1


async def test_a_run_started_after_the_fast_read_is_not_a_miss(two_tier: Harness) -> None:
    await two_tier.observe_at(0)
    await two_tier.observe_at(MINUTE)
    two_tier.sim.world.clock.advance(120)
    two_tier.sim.world.add_run(_workspace(two_tier.sim, "service-02-dev"), "planning")
    await two_tier.observe_at(TEN_MINUTES.total_seconds())
    assert two_tier.disabled() == 0


async def test_a_server_that_ignores_the_filter_switches_to_full_walks(two_tier: Harness) -> None:
    two_tier.sim.settings.current_run_filter = "ignore"
    await two_tier.observe_at(0)
    with capture_logs() as logs:
        fast = await two_tier.observe_at(MINUTE)
    # The answer listed workspaces whose current run is final: the filter was ignored. The
    # read itself is still used as what it is (a fast read: no user lock counts from it).
    assert fast.fast and fast.complete
    assert [e["why"] for e in logs if e["event"] == "tfc.fast_path_disabled"] == [
        "the server ignored the fast path's filter"
    ]
    assert two_tier.disabled() == 1
    assert not (await two_tier.observe_at(2 * MINUTE)).fast


async def test_a_server_that_refuses_a_comma_list_gets_one_request_per_status(
    two_tier: Harness,
) -> None:
    two_tier.sim.settings.current_run_filter = "reject_list"
    await two_tier.observe_at(0)
    with capture_logs() as logs:
        fast = await two_tier.observe_at(MINUTE)
    assert fast.fast and fast.complete
    assert _names(fast, fast.listed_ids) == {"payments-prod", "billing-staging"}
    assert two_tier.filters() == [",".join(NON_FINAL_STATUSES), *NON_FINAL_STATUSES]
    assert [e["event"] for e in logs if "fast_path" in e["event"]] == [
        "tfc.fast_path_comma_list_refused"
    ]
    # Remembered: no comma list again; and the self-check finds nothing missed.
    await two_tier.observe_at(2 * MINUTE)
    assert two_tier.filters() == list(NON_FINAL_STATUSES)
    await two_tier.observe_at(TEN_MINUTES.total_seconds())
    assert two_tier.disabled() == 0


async def test_a_server_that_refuses_the_filter_outright_is_walked_in_full_at_once(
    two_tier: Harness,
) -> None:
    """400 for one status too (a server that does not know the parameter): that cycle walks
    every workspace instead, and the next ones do too."""
    two_tier.sim.settings.current_run_filter = "reject"
    await two_tier.observe_at(0)
    observation = await two_tier.observe_at(MINUTE)
    assert not observation.fast and observation.complete
    assert two_tier.filters() == [",".join(NON_FINAL_STATUSES), NON_FINAL_STATUSES[0], None]
    assert two_tier.disabled() == 1
    await two_tier.observe_at(2 * MINUTE)
    assert two_tier.filters() == [None]


def test_the_self_check_counts_only_runs_the_fast_read_could_have_listed() -> None:
    """Pure schedule rules: a run created after the fast read started, or on a workspace
    whose fast entry was unreadable, is not a miss; any other non-final run is."""
    started = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)

    def workspace(wid: str, status: str, created: datetime) -> Workspace:
        run = Run(id=f"run-{wid}", status=status, created_at=created)
        return Workspace(organization="demo", id=wid, name=wid, current_run=run)

    before, after = started - timedelta(minutes=5), started + timedelta(seconds=1)
    walk = [
        workspace("ws-listed", "applying", before),
        workspace("ws-new", "planning", after),
        workspace("ws-unreadable", "applying", before),
        workspace("ws-final", "applied", before),
        workspace("ws-missed", "policy_checking", before),
    ]
    schedule = OrganizationSchedule(TEN_MINUTES, last_full=0.0)
    schedule.last_fast = FastRead(
        started, frozenset({("ws-listed", "run-ws-listed")}), frozenset({"ws-unreadable"})
    )
    assert schedule.full_walk_done(600.0, walk, total=5) == {("ws-missed", "run-ws-missed")}
    # Compared once: the next full walk without a fast read in between finds nothing.
    assert schedule.full_walk_done(1200.0, walk, total=5) == set()


async def test_a_carried_user_lock_is_acted_on_in_a_fast_cycle_only_after_a_fresh_re_read(
    two_tier: Harness,
) -> None:
    """Two full walks saw the lock (two sightings); it turns stale between full walks: the
    fast cycle plans the force-unlock from the carried workspace and act re-reads it first."""
    sim, source, metrics = two_tier.sim, two_tier.source, two_tier.metrics
    clock = FakeClock()
    memory = Memory(clock=clock)
    policy = Policy.model_validate(
        {
            "dry_run": False,
            "tfc": {"organizations": ["demo"]},
            "defaults": {"lock_stale_after": "2h", "actions": []},
            "rules": [
                {
                    "id": "cli",
                    "match": {"workspaces": ["web-dev"]},
                    "lock_stale_after": "1h",
                    "actions": ["force_unlock"],
                }
            ],
        }
    )
    actor = Actor(source=source, memory=memory, metrics=metrics, log=structlog.get_logger())
    runner = CycleRunner(sources=[source], memory=memory, metrics=metrics, actor=actor)

    async def cycle_at(seconds: float) -> Any:
        step = seconds - two_tier.now[0]
        two_tier.now[0] = seconds
        clock.advance(timedelta(seconds=step))
        sim.world.clock.advance(step)
        sim.request_log.clear()
        return await runner.run_cycle(policy)

    web = _workspace(sim, "web-dev")
    force_unlock = f"/api/v2/workspaces/{web.id}/actions/force-unlock"
    await cycle_at(0)
    await cycle_at(60)
    second = await cycle_at(TEN_MINUTES.total_seconds())  # the second full walk
    assert not second.observations[0].fast and not second.planned
    assert memory.sightings(web.id, web.locked_by[1]) == 2
    sim.world.clock.advance(3600)  # an hour passes on the server: the lock is now stale
    report = await cycle_at(TEN_MINUTES.total_seconds() + MINUTE)
    [observation] = report.observations
    assert observation.fast and web.id not in observation.listed_ids  # carried
    assert [r.action.kind.value for r in report.results] == ["force_unlock"]
    paths = [(e["method"], e["path"]) for e in sim.request_log]
    post = paths.index(("POST", force_unlock))
    assert ("GET", f"/api/v2/workspaces/{web.id}") in paths[:post]  # the re-read
    assert two_tier.reads("reread") >= 1
    assert not sim.world.workspaces[web.id].locked
