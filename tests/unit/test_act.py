"""act.py: re-verify, permissions, budget, dry-run, one POST, outcomes and audit events.

Most tests use a strict fake of TfcSource: it answers only the reads and POSTs a test set up
and fails loudly on anything else. The last section drives the real TfcSource and TfcClient
over respx (every request mocked), to prove the wiring: the re-read, the POST bodies and how
real HTTP answers become outcomes. The ladder on the fresh read is always the real decide.
"""

from __future__ import annotations

import email.utils
import json
from collections.abc import AsyncIterator, Callable, MutableMapping
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
import structlog
from structlog.testing import capture_logs

from tests.support import builders
from tests.support.builders import ALICE, BOB, EVERY_RUNG, NOW, ORG
from tests.support.clock import FakeClock
from watchdog.act import Actor
from watchdog.memory import Memory
from watchdog.metrics import Metrics
from watchdog.model import (
    ActionKind,
    ActionResult,
    Holder,
    HolderType,
    Observation,
    Outcome,
    PlannedAction,
    Run,
    RunActions,
    RunPermissions,
    Source,
    Workspace,
    WorkspacePermissions,
)
from watchdog.policy import Policy
from watchdog.sources.errors import SourceError
from watchdog.sources.tfc.client import (
    BadResponseError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    StateVersionPendingError,
    TfcClient,
    TfcError,
    TransportError,
)
from watchdog.sources.tfc.source import TfcSource, neutral_error

# The token's own user: its lock is plain-unlocked.
ROBOT = Holder(HolderType.USER, "user-robot", "robot")


def tfc_error(cls: type[TfcError], status: int | None, detail: str) -> TfcError:
    return cls(status=status, detail=detail, endpoint="POST /test")


# --- building blocks ------------------------------------------------------------------------


def policy(*, dry_run: bool = False, per_cycle: int = 10, per_hour: int = 100) -> Policy:
    """Every rung allowed, user/team locks stale after 2h, these limits."""
    return builders.policy(
        dry_run=dry_run,
        tfc={"organizations": [ORG]},
        limits={"max_actions_per_cycle": per_cycle, "max_actions_per_hour": per_hour},
        defaults={"lock_stale_after": "2h", "actions": EVERY_RUNG},
    )


def applying_run(run_id: str, *, status: str = "applying", can_cancel: bool = True) -> Run:
    return Run(
        id=run_id,
        status=status,
        created_at=NOW - timedelta(hours=8),
        status_timestamps={f"{status.replace('_', '-')}-at": NOW - timedelta(hours=7)},
        actions=RunActions(is_cancelable=not status.endswith("ed")),
        permissions=RunPermissions(can_cancel=can_cancel, can_force_cancel=True),
    )


def stuck_workspace(n: int, **run_options: Any) -> Workspace:
    """A workspace whose current run has been applying for 7h (threshold 6h): cancel."""
    run = applying_run(f"run-{n}", **run_options)
    return Workspace(
        organization=ORG,
        id=f"ws-{n}",
        name=f"app-{n}",
        locked=True,
        holder=Holder(HolderType.RUN, run.id),
        current_run=run,
        permissions=WorkspacePermissions(can_unlock=True, can_force_unlock=True),
    )


def cancel_action(n: int, *, age: timedelta = timedelta(hours=7)) -> PlannedAction:
    return PlannedAction(
        kind=ActionKind.CANCEL,
        source=Source.TFC,
        organization=ORG,
        workspace=f"app-{n}",
        workspace_id=f"ws-{n}",
        rule="defaults",
        reason=f"run run-{n} applying for 7h, threshold 6h",
        holder=Holder(HolderType.RUN, f"run-{n}"),
        run_id=f"run-{n}",
        run_status="applying",
        since=NOW - age,
        age=age,
        threshold=timedelta(hours=6),
    )


def user_locked_workspace(
    holder: Holder = ALICE, *, can_force_unlock: bool = True, run: Run | None = None
) -> Workspace:
    return builders.locked_workspace(
        holder,
        id="ws-lock",
        current_run=run,
        permissions=WorkspacePermissions(can_unlock=True, can_force_unlock=can_force_unlock),
    )


def seen_twice(memory: Memory, workspace: Workspace) -> None:
    """Two cycles, three hours apart, saw this lock: stale and confirmed."""
    for at in (NOW - timedelta(hours=3), NOW - timedelta(minutes=1)):
        observation = Observation(
            source=Source.TFC, organization=ORG, server_now=at, workspaces=(workspace,)
        )
        memory.update([observation], at)


def force_unlock_action(holder: Holder = ALICE) -> PlannedAction:
    return builders.planned_action(
        workspace_id="ws-lock",
        holder=holder,
        reason=f"lock held by {holder.label()} for 3h, threshold 2h",
    )


class FakeTarget:
    """A strict stand-in for TfcSource: unexpected reads or POSTs fail the test. The API
    errors a test sets up reach act.py as TfcSource raises them (`neutral_error`)."""

    def __init__(self, *workspaces: Workspace) -> None:
        self.workspaces: dict[str, Workspace | TfcError] = {ws.id: ws for ws in workspaces}
        self.post_errors: dict[str, TfcError] = {}
        self.allowed_posts: set[str] = set()
        self.reads: list[str] = []
        self.posts: list[tuple[str, ...]] = []
        self.after_read: Callable[[], None] | None = None
        self.after_post: Callable[[], None] | None = None
        # The answer to the pending-state-versions check: a count, or the error it raises.
        self.pending: int | TfcError = 0
        self.state_checks: list[tuple[str, str]] = []

    def now(self) -> datetime:
        return NOW

    async def read_workspace(self, workspace_id: str, organization: str) -> Workspace:
        self.reads.append(workspace_id)
        if workspace_id not in self.workspaces:
            raise AssertionError(f"unexpected read of {workspace_id}")
        value = self.workspaces[workspace_id]
        if self.after_read is not None:
            self.after_read()
        if isinstance(value, TfcError):
            raise neutral_error(value) from value
        return value

    async def pending_state_versions(self, organization: str, workspace: str) -> int:
        self.state_checks.append((organization, workspace))
        if isinstance(self.pending, TfcError):
            raise neutral_error(self.pending) from self.pending
        return self.pending

    def _post(self, name: str, *args: str) -> None:
        if name not in self.allowed_posts:
            raise AssertionError(f"unexpected POST {name} {args}")
        self.posts.append((name, *args))
        if self.after_post is not None:
            self.after_post()
        if name in self.post_errors:
            raise neutral_error(self.post_errors[name]) from self.post_errors[name]

    async def cancel_run(self, run_id: str, comment: str) -> None:
        self._post("cancel", run_id, comment)

    async def force_cancel_run(self, run_id: str, comment: str) -> None:
        self._post("force_cancel", run_id, comment)

    async def discard_run(self, run_id: str, comment: str) -> None:
        self._post("discard", run_id, comment)

    async def unlock_workspace(self, workspace_id: str) -> None:
        self._post("unlock", workspace_id)

    async def force_unlock_workspace(self, workspace_id: str) -> None:
        self._post("force_unlock", workspace_id)


def watched_user_lock(
    holder: Holder = ALICE, *, can_force_unlock: bool = True
) -> tuple[FakeTarget, Memory]:
    """`holder`'s lock on ws-lock, seen twice three hours apart (stale and confirmed), and a
    strict fake source whose fresh read shows it unchanged (no POST allowed yet)."""
    workspace = user_locked_workspace(holder, can_force_unlock=can_force_unlock)
    memory = Memory()
    seen_twice(memory, workspace)
    return FakeTarget(workspace), memory


def make_actor(target: FakeTarget, memory: Memory | None = None) -> tuple[Actor, Metrics, Memory]:
    metrics = Metrics()
    memory = memory if memory is not None else Memory()
    actor = Actor(
        source=target,
        memory=memory,
        metrics=metrics,
        log=structlog.get_logger("watchdog.act"),
    )
    return actor, metrics, memory


def count(metrics: Metrics, kind: str, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "tfc_watchdog_actions_total", {"action": kind, "outcome": outcome}
    )
    assert value is not None
    return value


def outcomes(results: list[ActionResult]) -> list[Outcome]:
    return [r.outcome for r in results]


def audit_events(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if "outcome" in e]


# --- success and the audit event ------------------------------------------------------------


async def test_a_justified_cancel_is_posted_once_with_the_comment_and_audited() -> None:
    target = FakeTarget(stuck_workspace(1))
    target.allowed_posts = {"cancel"}
    pol = policy(per_hour=5)
    actor, metrics, memory = make_actor(target)
    action = cancel_action(1)

    with capture_logs() as logs:
        results = await actor.carry_out([action], pol, NOW, None)

    assert outcomes(results) == [Outcome.DONE]
    assert target.reads == ["ws-1"]
    assert target.posts == [("cancel", "run-1", "tfc-watchdog: " + action.reason)]
    assert count(metrics, "cancel", "done") == 1
    assert memory.actions_in_window() == 1
    assert metrics.registry.get_sample_value("tfc_watchdog_actions_budget_remaining") == 4
    [event] = audit_events(logs)
    assert event == {
        "event": "action",
        "log_level": "info",
        "action": "cancel",
        "source": "tfc",
        "outcome": "done",
        "organization": ORG,
        "workspace": "app-1",
        "workspace_id": "ws-1",
        "holder": "run:run-1",
        "run_id": "run-1",
        "run_status": "applying",
        "age": "7h00m",
        "age_seconds": 7 * 3600,
        "threshold": "6h",
        "rule": "defaults",
        "reason": action.reason,
        "detail": "",
        "dry_run": False,
    }


async def test_a_stale_user_lock_is_force_unlocked() -> None:
    target, memory = watched_user_lock()
    target.allowed_posts = {"force_unlock"}
    pol = policy()
    actor, metrics, _ = make_actor(target, memory)

    results = await actor.carry_out([force_unlock_action()], pol, NOW, None)

    assert outcomes(results) == [Outcome.DONE]
    assert target.posts == [("force_unlock", "ws-lock")]
    assert count(metrics, "force_unlock", "done") == 1


# --- dry-run --------------------------------------------------------------------------------


async def test_dry_run_sends_no_post_and_logs_would_with_every_field() -> None:
    target = FakeTarget(stuck_workspace(1))  # no POST allowed: one would fail the test
    pol = policy(dry_run=True)
    actor, metrics, memory = make_actor(target)

    with capture_logs() as logs:
        results = await actor.carry_out([cancel_action(1)], pol, NOW, None)

    assert outcomes(results) == [Outcome.DRY_RUN]
    assert target.posts == []
    assert count(metrics, "cancel", "dry_run") == 1
    assert memory.actions_in_window() == 0
    [event] = audit_events(logs)
    assert event["event"] == "would cancel acme/app-1"
    assert event["log_level"] == "info"
    assert event["dry_run"] is True
    assert event["outcome"] == "dry_run"
    assert event["run_id"] == "run-1"
    assert event["holder"] == "run:run-1"
    assert event["threshold"] == "6h"


async def test_dry_run_spends_no_budget() -> None:
    target = FakeTarget(*(stuck_workspace(n) for n in range(3)))
    pol = policy(dry_run=True, per_cycle=1, per_hour=1)
    actor, _, _ = make_actor(target)

    results = await actor.carry_out([cancel_action(n) for n in range(3)], pol, NOW, None)

    assert outcomes(results) == [Outcome.DRY_RUN] * 3


# --- budget ---------------------------------------------------------------------------------


async def test_per_cycle_budget_skips_the_rest_without_reading_them() -> None:
    target = FakeTarget(*(stuck_workspace(n) for n in range(4)))
    target.allowed_posts = {"cancel"}
    pol = policy(per_cycle=2)
    actor, metrics, _ = make_actor(target)

    results = await actor.carry_out([cancel_action(n) for n in range(4)], pol, NOW, None)

    assert outcomes(results) == [Outcome.DONE, Outcome.DONE] + [Outcome.SKIPPED_BUDGET] * 2
    assert target.reads == ["ws-0", "ws-1"]
    assert [p[1] for p in target.posts] == ["run-0", "run-1"]
    assert count(metrics, "cancel", "skipped_budget") == 2


async def test_per_cycle_budget_counts_failed_posts_too() -> None:
    target = FakeTarget(stuck_workspace(0), stuck_workspace(1))
    target.allowed_posts = {"cancel"}
    target.post_errors["cancel"] = tfc_error(RateLimitedError, 429, "slow down")
    pol = policy(per_cycle=1)
    actor, _, memory = make_actor(target)

    results = await actor.carry_out([cancel_action(0), cancel_action(1)], pol, NOW, None)

    assert outcomes(results) == [Outcome.FAILED, Outcome.SKIPPED_BUDGET]
    assert len(target.posts) == 1
    # Every POST sent fills the sliding hour too, whatever the answer.
    assert memory.actions_in_window() == 1


def spent(memory: Memory, clock: FakeClock, ago: timedelta) -> None:
    """One POST sent `ago` before the clock's now."""
    clock.advance(-ago)
    assert memory.begin_action(cancel_action(99)) is not None
    clock.advance(ago)


async def test_hourly_budget_holds_across_calls_and_slides() -> None:
    target = FakeTarget(*(stuck_workspace(n) for n in range(3)))
    target.allowed_posts = {"cancel"}
    clock = FakeClock()
    memory = Memory(clock=clock)
    spent(memory, clock, timedelta(minutes=59))  # still inside the hour
    spent(memory, clock, timedelta(minutes=61))  # slid out
    pol = policy(per_hour=2)
    actor, metrics, _ = make_actor(target, memory)

    first = await actor.carry_out([cancel_action(0), cancel_action(1)], pol, NOW, None)
    clock.advance(timedelta(minutes=1))
    second = await actor.carry_out([cancel_action(2)], pol, NOW + timedelta(minutes=1), None)

    assert outcomes(first) == [Outcome.DONE, Outcome.SKIPPED_BUDGET]
    assert outcomes(second) == [Outcome.SKIPPED_BUDGET]
    assert target.reads == ["ws-0"]
    assert metrics.registry.get_sample_value("tfc_watchdog_actions_budget_remaining") == 0


async def test_hourly_budget_frees_up_after_an_hour() -> None:
    target = FakeTarget(stuck_workspace(0))
    target.allowed_posts = {"cancel"}
    clock = FakeClock()
    memory = Memory(clock=clock)
    spent(memory, clock, timedelta(minutes=61))
    pol = policy(per_hour=1)
    actor, metrics, _ = make_actor(target, memory)

    results = await actor.carry_out([cancel_action(0)], pol, NOW, None)

    assert outcomes(results) == [Outcome.DONE]
    assert metrics.registry.get_sample_value("tfc_watchdog_actions_budget_remaining") == 0


# --- the fresh read must still justify the action -------------------------------------------


async def test_a_different_lock_holder_on_the_fresh_read_skips_without_post() -> None:
    memory = Memory()
    seen_twice(memory, user_locked_workspace(ALICE))
    # Bob took the lock between the observe read and the act re-read.
    target = FakeTarget(user_locked_workspace(BOB))
    pol = policy()
    actor, metrics, _ = make_actor(target, memory)

    with capture_logs() as logs:
        results = await actor.carry_out([force_unlock_action(ALICE)], pol, NOW, None)

    assert outcomes(results) == [Outcome.SKIPPED_CHANGED]
    assert target.posts == []
    assert count(metrics, "force_unlock", "skipped_changed") == 1
    [event] = audit_events(logs)
    assert event["log_level"] == "warning"
    assert event["outcome"] == "skipped_changed"


async def test_a_run_that_finished_before_the_re_read_is_not_cancelled() -> None:
    finished = stuck_workspace(1)
    finished = replace(
        finished,
        locked=False,
        holder=None,
        current_run=applying_run("run-1", status="applied"),
    )
    target = FakeTarget(finished)
    pol = policy()
    actor, _, _ = make_actor(target)

    results = await actor.carry_out([cancel_action(1)], pol, NOW, None)

    assert outcomes(results) == [Outcome.SKIPPED_CHANGED]
    assert target.posts == []


async def test_a_run_status_change_on_the_fresh_read_skips_and_says_what_changed() -> None:
    # Still stuck, but now in a different phase than the one observed.
    moved = stuck_workspace(1)
    moved = replace(moved, current_run=applying_run("run-1", status="post_apply_running"))
    target = FakeTarget(moved)
    pol = policy()
    actor, _, _ = make_actor(target)

    results = await actor.carry_out([cancel_action(1)], pol, NOW, None)

    assert outcomes(results) == [Outcome.SKIPPED_CHANGED]
    assert "applying" in results[0].detail
    assert "post_apply_running" in results[0].detail
    assert target.posts == []


async def test_a_failed_re_read_fails_the_action_without_post() -> None:
    target = FakeTarget()
    target.workspaces["ws-1"] = tfc_error(BadResponseError, 200, "missing data")
    pol = policy()
    actor, metrics, _ = make_actor(target)

    results = await actor.carry_out([cancel_action(1)], pol, NOW, None)

    assert outcomes(results) == [Outcome.FAILED]
    assert results[0].detail.startswith("re-read failed: ")
    assert target.posts == []
    assert count(metrics, "cancel", "failed") == 1


# --- permissions ----------------------------------------------------------------------------


async def test_missing_permission_is_forbidden_without_post_and_logged_once() -> None:
    target = FakeTarget(stuck_workspace(1, can_cancel=False))
    pol = policy()
    actor, metrics, _ = make_actor(target)

    with capture_logs() as logs:
        first = await actor.carry_out([cancel_action(1)], pol, NOW, None)
        second = await actor.carry_out([cancel_action(1)], pol, NOW + timedelta(minutes=1), None)

    assert outcomes(first) == outcomes(second) == [Outcome.FORBIDDEN]
    assert "can-cancel" in first[0].detail
    assert target.posts == []
    assert count(metrics, "cancel", "forbidden") == 2
    [event] = audit_events(logs)
    assert event["outcome"] == "forbidden"
    assert event["log_level"] == "warning"


async def test_a_principal_without_admin_sends_no_force_unlock() -> None:
    target, memory = watched_user_lock(can_force_unlock=False)
    pol = policy()
    actor, _, _ = make_actor(target, memory)

    results = await actor.carry_out([force_unlock_action()], pol, NOW, None)

    assert outcomes(results) == [Outcome.FORBIDDEN]
    assert "can-force-unlock" in results[0].detail
    assert target.posts == []


# --- what the server answers ----------------------------------------------------------------


async def test_a_404_is_forbidden_and_always_logged() -> None:
    target = FakeTarget(stuck_workspace(1))
    target.allowed_posts = {"cancel"}
    target.post_errors["cancel"] = tfc_error(NotFoundError, 404, "not found")
    pol = policy()
    actor, metrics, _ = make_actor(target)

    with capture_logs() as logs:
        await actor.carry_out([cancel_action(1)], pol, NOW, None)
        results = await actor.carry_out([cancel_action(1)], pol, NOW, None)

    assert outcomes(results) == [Outcome.FORBIDDEN]
    assert results[0].detail.startswith("not found or not permitted")
    assert len(target.posts) == 2
    assert count(metrics, "cancel", "forbidden") == 2
    assert len(audit_events(logs)) == 2


async def test_a_pending_state_version_on_unlock_is_retried_later() -> None:
    target, memory = watched_user_lock()
    target.allowed_posts = {"force_unlock"}
    target.post_errors["force_unlock"] = tfc_error(
        StateVersionPendingError, 503, "state version is still pending"
    )
    pol = policy()
    actor, metrics, _ = make_actor(target, memory)

    with capture_logs() as logs:
        results = await actor.carry_out([force_unlock_action()], pol, NOW, None)

    [result] = results
    assert result.outcome is Outcome.FAILED
    assert result.retry_later is True
    assert result.detail == "state version pending; retrying next cycle"
    assert count(metrics, "force_unlock", "failed") == 1
    [event] = audit_events(logs)
    assert event["log_level"] == "warning"


# --- no unlock while a state version is pending, nor when that cannot be checked ------------


async def test_a_pending_state_version_stops_the_force_unlock_before_its_post() -> None:
    target, memory = watched_user_lock()  # no POST allowed: one would fail the test
    target.pending = 1
    pol = policy()
    actor, metrics, _ = make_actor(target, memory)

    results = await actor.carry_out([force_unlock_action()], pol, NOW, None)

    [result] = results
    assert result.outcome is Outcome.FAILED
    assert result.retry_later is True
    assert "state upload pending" in result.detail
    assert target.state_checks == [(ORG, "network")]
    assert target.posts == []
    assert count(metrics, "force_unlock", "failed") == 1
    # A read spends no action budget.
    assert memory.actions_in_window() == 0


async def test_an_unlock_is_checked_like_a_force_unlock() -> None:
    target, memory = watched_user_lock(ROBOT)
    target.pending = 2
    pol = policy()
    actor, _, _ = make_actor(target, memory)
    action = replace(force_unlock_action(ROBOT), kind=ActionKind.UNLOCK)

    [result] = await actor.carry_out([action], pol, NOW, ROBOT)

    assert (result.outcome, result.retry_later) == (Outcome.FAILED, True)
    assert target.state_checks == [(ORG, "network")]
    assert target.posts == []


@pytest.mark.parametrize(
    "error",
    [
        NotFoundError(endpoint="GET /state-versions", status=404, detail="not found"),
        ServerError(endpoint="GET /state-versions", status=502, detail="bad gateway"),
        TransportError(endpoint="GET /state-versions", reason="timeout", detail="read"),
        BadResponseError(endpoint="GET /state-versions", status=200, detail="no JSON"),
    ],
    ids=["404", "5xx", "timeout", "unreadable"],
)
async def test_a_check_that_cannot_be_made_is_a_no(error: TfcError) -> None:
    target, memory = watched_user_lock()  # no POST allowed
    target.pending = error
    pol = policy()
    actor, metrics, _ = make_actor(target, memory)

    with capture_logs() as logs:
        [result] = await actor.carry_out([force_unlock_action()], pol, NOW, None)

    assert result.outcome is Outcome.FAILED
    assert result.retry_later is False
    assert result.detail.startswith("pending state versions could not be checked; not unlocking")
    assert target.posts == []
    assert count(metrics, "force_unlock", "failed") == 1
    [event] = audit_events(logs)
    assert event["log_level"] == "warning"


async def test_a_dry_run_preview_checks_state_versions_and_says_the_truth() -> None:
    target, memory = watched_user_lock()
    target.pending = 1
    pol = policy(dry_run=True)
    actor, _, _ = make_actor(target, memory)

    [pending] = await actor.carry_out([force_unlock_action()], pol, NOW, None)
    target.pending = 0
    [clear] = await actor.carry_out([force_unlock_action()], pol, NOW, None)

    assert pending.outcome is Outcome.FAILED and "state upload pending" in pending.detail
    assert clear.outcome is Outcome.DRY_RUN
    assert len(target.state_checks) == 2
    assert target.posts == []


async def test_no_state_version_request_unless_about_to_unlock() -> None:
    # A cancel, a force-unlock the token may not do, and one past the budget: no check.
    forbidden = user_locked_workspace(can_force_unlock=False)
    memory = Memory()
    seen_twice(memory, forbidden)
    target = FakeTarget(stuck_workspace(1), forbidden)
    target.allowed_posts = {"cancel"}
    pol = policy(per_cycle=1)
    actor, _, _ = make_actor(target, memory)
    results = await actor.carry_out([cancel_action(1), force_unlock_action()], pol, NOW, None)
    assert outcomes(results) == [Outcome.DONE, Outcome.SKIPPED_BUDGET]

    pol2 = policy()
    results = await make_actor(target, memory)[0].carry_out(
        [force_unlock_action()], pol2, NOW, None
    )
    assert outcomes(results) == [Outcome.FORBIDDEN]
    assert target.state_checks == []


async def test_a_bug_in_the_target_is_not_swallowed() -> None:
    target = FakeTarget(stuck_workspace(1))  # cancel not allowed: the fake raises
    pol = policy()
    actor, _, _ = make_actor(target)

    with pytest.raises(AssertionError, match="unexpected POST"):
        await actor.carry_out([cancel_action(1)], pol, NOW, None)


# --- one POST per workspace, and stopping ---------------------------------------------------


async def test_at_most_one_post_per_workspace_per_call() -> None:
    target = FakeTarget(stuck_workspace(1))
    target.allowed_posts = {"cancel"}
    pol = policy()
    actor, _, _ = make_actor(target)

    results = await actor.carry_out([cancel_action(1), cancel_action(1)], pol, NOW, None)

    assert outcomes(results) == [Outcome.DONE, Outcome.SKIPPED_CHANGED]
    assert len(target.posts) == 1


async def test_stop_sends_no_further_post_and_drops_the_rest() -> None:
    target = FakeTarget(*(stuck_workspace(n) for n in range(3)))
    target.allowed_posts = {"cancel"}
    pol = policy()
    actor, metrics, _ = make_actor(target)
    target.after_post = actor.stop  # SIGTERM arrives during the first POST

    results = await actor.carry_out([cancel_action(n) for n in range(3)], pol, NOW, None)

    assert outcomes(results) == [Outcome.DONE]
    assert len(target.posts) == 1
    assert target.reads == ["ws-0"]
    assert count(metrics, "cancel", "skipped_budget") == 0
    assert actor.stopped


async def test_a_stopped_actor_does_nothing() -> None:
    target = FakeTarget(stuck_workspace(0))
    pol = policy()
    actor, _, _ = make_actor(target)
    actor.stop()

    assert await actor.carry_out([cancel_action(0)], pol, NOW, None) == []
    assert target.reads == []


async def test_stop_during_the_re_read_sends_no_post() -> None:
    target = FakeTarget(stuck_workspace(0))
    target.allowed_posts = {"cancel"}
    pol = policy()
    actor, metrics, _ = make_actor(target)
    target.after_read = actor.stop

    results = await actor.carry_out([cancel_action(0)], pol, NOW, None)

    assert results == []
    assert target.posts == []
    assert count(metrics, "cancel", "done") == 0


# --- sources --------------------------------------------------------------------------------


async def test_an_action_of_a_source_without_executor_fails_without_any_call() -> None:
    target = FakeTarget()  # any read or POST would fail the test
    pol = policy()
    actor, metrics, _ = make_actor(target)
    action = replace(cancel_action(0), kind=ActionKind.DELETE_LOCK, source=Source.DYNAMODB)

    [result] = await actor.carry_out([action], pol, NOW, None)

    assert result.outcome is Outcome.FAILED
    assert "dynamodb" in result.detail
    assert count(metrics, "delete_lock", "failed") == 1


# --- the real TfcSource over respx ----------------------------------------------------------

API = "http://127.0.0.1:9/api/v2"
DATE = {"Date": email.utils.format_datetime(NOW, usegmt=True)}


def stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def workspace_document(
    *, status: str = "applying", can_cancel: bool = True, holder: str = "run-1"
) -> dict[str, Any]:
    """GET /workspaces/ws-1?include=...: locked by its run, applying for 7h."""
    return {
        "data": {
            "id": "ws-1",
            "type": "workspaces",
            "attributes": {
                "name": "app-1",
                "locked": True,
                "locked-reason": None,
                "tag-names": [],
                "permissions": {"can-unlock": True, "can-force-unlock": True},
            },
            "relationships": {
                "organization": {"data": {"id": ORG, "type": "organizations"}},
                "locked-by": {"data": {"id": holder, "type": "runs"}},
                "current-run": {"data": {"id": "run-1", "type": "runs"}},
            },
        },
        "included": [
            {
                "id": "run-1",
                "type": "runs",
                "attributes": {
                    "status": status,
                    "created-at": stamp(NOW - timedelta(hours=8)),
                    "status-timestamps": {
                        f"{status.replace('_', '-')}-at": stamp(NOW - timedelta(hours=7))
                    },
                    "actions": {"is-cancelable": True},
                    "permissions": {"can-cancel": can_cancel},
                },
            }
        ],
    }


@pytest.fixture
async def api() -> AsyncIterator[tuple[respx.MockRouter, TfcSource, Metrics]]:
    metrics = Metrics()
    with respx.mock(base_url=API, assert_all_mocked=True, assert_all_called=False) as router:
        async with TfcClient(
            address="http://127.0.0.1:9", token="t0ken", metrics=metrics, requests_per_second=1000
        ) as client:
            yield router, TfcSource(client, [ORG], metrics), metrics


def real_actor(source: TfcSource, metrics: Metrics) -> Actor:
    return Actor(
        source=source,
        memory=Memory(),
        metrics=metrics,
        log=structlog.get_logger("watchdog.act"),
    )


def posts(router: respx.MockRouter) -> list[httpx.Request]:
    return [call.request for call in router.calls if call.request.method == "POST"]


async def force_unlock_alice_on_the_real_source(
    router: respx.MockRouter, source: TfcSource, metrics: Metrics
) -> ActionResult:
    """Alice's lock on ws-1, stale and seen twice, with the current run finished: the real
    actor carries out a force-unlock of it. The test sets up the state-version check and the
    POST's answer."""
    document = workspace_document()
    document["data"]["relationships"]["locked-by"] = {"data": {"id": "user-alice", "type": "users"}}
    document["included"][0]["attributes"]["status"] = "applied"
    router.get("/workspaces/ws-1").respond(200, json=document, headers=DATE)
    memory = Memory()
    seen_twice(memory, replace(user_locked_workspace(), id="ws-1", name="app-1"))
    actor = Actor(
        source=source,
        memory=memory,
        metrics=metrics,
        log=structlog.get_logger("watchdog.act"),
    )
    action = replace(
        force_unlock_action(),
        workspace_id="ws-1",
        workspace="app-1",
        holder=Holder(HolderType.USER, "user-alice"),
        # decide records the current run of a lock's workspace too: a new run between the
        # reads is a change.
        run_id="run-1",
        run_status="applied",
    )
    [result] = await actor.carry_out([action], policy(), NOW, None)
    return result


async def test_real_source_cancel_posts_the_comment_once(
    api: tuple[respx.MockRouter, TfcSource, Metrics],
) -> None:
    router, source, metrics = api
    router.get("/workspaces/ws-1").respond(200, json=workspace_document(), headers=DATE)
    cancel = router.post("/runs/run-1/actions/cancel").respond(202, headers=DATE)
    action = cancel_action(1)

    pol = policy()
    [result] = await real_actor(source, metrics).carry_out([action], pol, NOW, None)

    assert result.outcome is Outcome.DONE
    assert cancel.call_count == 1
    assert json.loads(cancel.calls.last.request.content) == {"comment": action.comment}
    assert count(metrics, "cancel", "done") == 1


async def test_real_source_dry_run_sends_only_the_re_read(
    api: tuple[respx.MockRouter, TfcSource, Metrics],
) -> None:
    router, source, metrics = api
    read = router.get("/workspaces/ws-1").respond(200, json=workspace_document(), headers=DATE)

    pol = policy(dry_run=True)
    [result] = await real_actor(source, metrics).carry_out([cancel_action(1)], pol, NOW, None)

    assert result.outcome is Outcome.DRY_RUN
    assert read.call_count == 1
    assert posts(router) == []


@pytest.mark.parametrize(
    ("fresh", "outcome"),
    [
        ({"status": "applied"}, Outcome.SKIPPED_CHANGED),  # the run finished meanwhile
        ({"can_cancel": False}, Outcome.FORBIDDEN),  # the token may not cancel it
    ],
    ids=["finished-run", "missing-can-cancel"],
)
async def test_real_source_a_re_read_that_no_longer_allows_the_cancel_sends_no_post(
    api: tuple[respx.MockRouter, TfcSource, Metrics], fresh: dict[str, Any], outcome: Outcome
) -> None:
    router, source, metrics = api
    router.get("/workspaces/ws-1").respond(200, json=workspace_document(**fresh), headers=DATE)

    pol = policy()
    [result] = await real_actor(source, metrics).carry_out([cancel_action(1)], pol, NOW, None)

    assert result.outcome is outcome
    assert posts(router) == []


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (
            409,
            {"errors": [{"status": "409", "title": "conflict", "detail": "not applying"}]},
            Outcome.SKIPPED_CHANGED,
        ),
        (404, None, Outcome.FORBIDDEN),
    ],
    ids=["409-skipped", "404-forbidden"],
)
async def test_real_source_an_error_on_the_post_is_not_retried_or_escalated(
    api: tuple[respx.MockRouter, TfcSource, Metrics],
    status: int,
    body: dict[str, Any] | None,
    outcome: Outcome,
) -> None:
    router, source, metrics = api
    router.get("/workspaces/ws-1").respond(200, json=workspace_document(), headers=DATE)
    router.post("/runs/run-1/actions/cancel").respond(status, json=body, headers=DATE)

    pol = policy()
    [result] = await real_actor(source, metrics).carry_out([cancel_action(1)], pol, NOW, None)

    assert result.outcome is outcome
    assert len(posts(router)) == 1


async def test_real_source_a_503_on_unlock_is_retried_next_cycle(
    api: tuple[respx.MockRouter, TfcSource, Metrics],
) -> None:
    router, source, metrics = api
    router.get("/state-versions").respond(200, json={"data": []}, headers=DATE)
    unlock = router.post("/workspaces/ws-1/actions/force-unlock").respond(503, headers=DATE)

    result = await force_unlock_alice_on_the_real_source(router, source, metrics)

    assert result.outcome is Outcome.FAILED
    assert result.retry_later is True
    assert unlock.call_count == 1


# --- every POST sent is recorded before it is sent and counts, whatever the answer -----------


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        # The server certainly did not act: failed.
        (tfc_error(RateLimitedError, 429, "slow down"), Outcome.FAILED),
        (tfc_error(TfcError, 422, "unprocessable"), Outcome.FAILED),
        (
            TransportError(
                endpoint="POST /test", reason="transport", detail="refused", request_sent=False
            ),
            Outcome.FAILED,
        ),
        # It may have: unknown.
        (TransportError(endpoint="POST /test", reason="timeout", detail="read"), Outcome.UNKNOWN),
        (
            TransportError(endpoint="POST /test", reason="transport", detail="connection reset"),
            Outcome.UNKNOWN,
        ),
        (tfc_error(ServerError, 502, "bad gateway"), Outcome.UNKNOWN),
        # It did not, because the run was no longer cancelable: skipped, never escalated.
        (tfc_error(ConflictError, 409, "not planning or applying"), Outcome.SKIPPED_CHANGED),
    ],
    ids=["429", "422", "connect-refused", "timeout", "reset-after-send", "502", "409"],
)
async def test_a_post_error_ends_the_action_as_failed_or_unknown_and_counts(
    error: TfcError, outcome: Outcome
) -> None:
    target = FakeTarget(stuck_workspace(1))
    target.allowed_posts = {"cancel"}
    target.post_errors["cancel"] = error
    pol = policy(per_hour=5)
    actor, metrics, memory = make_actor(target)

    [result] = await actor.carry_out([cancel_action(1)], pol, NOW, None)

    assert result.outcome is outcome
    assert error.detail in result.detail
    assert result.retry_later is False
    assert len(target.posts) == 1
    assert count(metrics, "cancel", outcome.value) == 1
    assert memory.actions_in_window() == 1
    assert [r.outcome for r in memory.actions] == [outcome.value]
    assert metrics.registry.get_sample_value("tfc_watchdog_actions_budget_remaining") == 4


def test_the_unknown_outcome_is_exported_before_it_happens() -> None:
    metrics = Metrics()
    for kind in ("cancel", "force_unlock", "delete_lock"):
        assert count(metrics, kind, "unknown") == 0


async def test_the_intent_is_on_disk_before_the_post_and_completed_after(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    target = FakeTarget(stuck_workspace(1))
    target.allowed_posts = {"cancel"}
    seen_during_post: list[dict[str, Any]] = []
    target.after_post = lambda: seen_during_post.extend(json.loads(path.read_text())["actions"])
    pol = policy()
    actor, _, _ = make_actor(target, Memory.load(str(path)))

    await actor.carry_out([cancel_action(1)], pol, NOW, None)

    [intent] = seen_during_post
    assert intent["outcome"] is None
    assert (intent["action"], intent["workspace_id"]) == ("cancel", "ws-1")
    [done] = json.loads(path.read_text())["actions"]
    assert done["outcome"] == "done"
    assert done["id"] == intent["id"]


async def test_no_post_when_the_intent_cannot_be_written(tmp_path: Path) -> None:
    target = FakeTarget(stuck_workspace(1))  # no POST allowed: one would fail the test
    memory = Memory.load(str(tmp_path / "gone" / "state.json"))  # its directory is missing
    pol = policy()
    actor, _, _ = make_actor(target, memory)

    [result] = await actor.carry_out([cancel_action(1)], pol, NOW, None)

    assert result.outcome is Outcome.FAILED
    assert "intent could not be written" in result.detail
    assert target.posts == []
    assert memory.actions_in_window() == 0


async def test_posts_the_server_performed_but_never_answered_fill_the_hourly_budget(
    api: tuple[respx.MockRouter, TfcSource, Metrics],
) -> None:
    # Every cancel reaches the server, which performs it, but the answer never comes back
    # (a read timeout). Eight cycles plan a cancel; two are allowed per hour.
    router, source, metrics = api
    router.route(method="GET", path__regex=r".*/workspaces/ws-\d$").mock(
        side_effect=lambda request: httpx.Response(
            200,
            json=_numbered(workspace_document(), request.url.path.rsplit("-", 1)[1]),
            headers=DATE,
        )
    )
    cancels = router.route(method="POST", path__regex=r".*/runs/run-\d/actions/cancel$").mock(
        side_effect=httpx.ReadTimeout("no answer")
    )
    memory = Memory()
    pol = policy(per_hour=2)
    actor = Actor(
        source=source,
        memory=memory,
        metrics=metrics,
        log=structlog.get_logger("watchdog.act"),
    )

    results = [
        result
        for n in range(8)
        for result in await actor.carry_out([cancel_action(n)], pol, NOW, None)
    ]

    assert cancels.call_count == 2
    assert [r.outcome for r in results] == [Outcome.UNKNOWN] * 2 + [Outcome.SKIPPED_BUDGET] * 6
    assert count(metrics, "cancel", "unknown") == 2


def _numbered(document: dict[str, Any], n: str) -> dict[str, Any]:
    """workspace_document() for ws-<n> / run-<n>."""
    text = json.dumps(document).replace('"ws-1"', f'"ws-{n}"').replace('"run-1"', f'"run-{n}"')
    text = text.replace('"app-1"', f'"app-{n}"')
    result: dict[str, Any] = json.loads(text)
    return result


# --- the pending-state-versions request of the real TfcSource ---------------------------------


def state_versions(*statuses: str, next_page: int | None = None) -> dict[str, Any]:
    return {
        "data": [
            {"id": f"sv-{i}", "type": "state-versions", "attributes": {"status": status}}
            for i, status in enumerate(statuses)
        ],
        "meta": {"pagination": {"current-page": 1, "next-page": next_page}},
    }


async def test_real_source_asks_for_pending_versions_by_names_and_counts_the_request(
    api: tuple[respx.MockRouter, TfcSource, Metrics],
) -> None:
    router, source, metrics = api
    route = router.get("/state-versions").respond(200, json=state_versions("pending"), headers=DATE)

    assert await source.pending_state_versions(ORG, "app 1") == 1

    [call] = route.calls
    assert dict(call.request.url.params) == {
        "filter[workspace][name]": "app 1",
        "filter[organization][name]": ORG,
        "filter[status]": "pending",
    }
    sample = metrics.registry.get_sample_value(
        "tfc_watchdog_api_requests_total", {"endpoint": "GET /state-versions", "code": "200"}
    )
    assert sample == 1


@pytest.mark.parametrize(
    ("body", "pending"),
    [
        (state_versions(), 0),
        (state_versions("pending", "pending"), 2),
        # A server that ignored the status filter: the statuses still speak, one page whole.
        (state_versions("finalized", "discarded"), 0),
        (state_versions("pending", "finalized"), 1),
    ],
)
async def test_real_source_counts_pending_versions_by_their_status(
    api: tuple[respx.MockRouter, TfcSource, Metrics], body: dict[str, Any], pending: int
) -> None:
    router, source, _ = api
    router.get("/state-versions").respond(200, json=body, headers=DATE)
    assert await source.pending_state_versions(ORG, "app-1") == pending


@pytest.mark.parametrize(
    "body",
    [
        {"data": {"id": "sv-1"}},
        {"data": [{"id": "sv-1", "type": "state-versions", "attributes": {}}]},
        {"data": ["sv-1"]},
        state_versions("finalized", next_page=2),
    ],
    ids=["data-not-a-list", "no-status", "not-an-object", "unfiltered-with-more-pages"],
)
async def test_real_source_an_untrustworthy_list_is_an_error(
    api: tuple[respx.MockRouter, TfcSource, Metrics], body: dict[str, Any]
) -> None:
    router, source, _ = api
    router.get("/state-versions").respond(200, json=body, headers=DATE)
    with pytest.raises(SourceError) as caught:
        await source.pending_state_versions(ORG, "app-1")
    assert isinstance(caught.value.__cause__, BadResponseError)


async def test_real_source_a_404_on_the_check_sends_no_force_unlock(
    api: tuple[respx.MockRouter, TfcSource, Metrics],
) -> None:
    router, source, metrics = api
    router.get("/state-versions").respond(404, headers=DATE)
    unlock = router.post("/workspaces/ws-1/actions/force-unlock").respond(202, headers=DATE)

    result = await force_unlock_alice_on_the_real_source(router, source, metrics)

    assert result.outcome is Outcome.FAILED
    assert "could not be checked" in result.detail
    assert unlock.call_count == 0
