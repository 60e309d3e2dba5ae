"""The safety invariants (README "Safety and guarantees") as properties over random worlds
(see world.py).

Each property runs the real cycle against the real simulator app in-process and judges every
POST that reached the simulator by its own arithmetic on the simulated world as it was when
the POST arrived, not by what the watchdog's own code believed.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import event, given

from tests.properties.profile import PROPERTY
from tests.properties.world import (
    Case,
    CycleSpec,
    Harness,
    Post,
    RunSpec,
    Trace,
    WorkspaceSpec,
    cases,
    enforcing_case,
    run_case,
)
from watchdog.model import phase_group

HOUR = timedelta(hours=1)
RUNG = {
    "cancel": "cancel",
    "force-cancel": "force_cancel",
    "discard": "discard",
    "unlock": "unlock",
    "force-unlock": "force_unlock",
}


def _run(case: Case, harness: Harness) -> Trace:
    trace = harness.run(case)
    event(f"POSTs sent: {min(len(trace.posts), 3)}{'+' if len(trace.posts) >= 3 else ''}")
    for post in trace.posts:
        event(f"POST {post.kind}")
    return trace


def _run_threshold(case: Case, status: str) -> timedelta:
    group = phase_group(status)
    assert group is not None, f"acted on a run in final status {status}"
    seconds = case.waiting_after if group == "waiting" else case.run_stuck_after
    return timedelta(seconds=seconds)


@PROPERTY
@given(cases(dry_run=True))
def test_dry_run_sends_no_post(harness: Harness, case: Case) -> None:
    trace = _run(case, harness)
    assert trace.posts == []


# --- the invariants: each judges every POST of one simulated world ---------------------------


def no_action_on_a_lock_or_run_younger_than_its_threshold(case: Case, trace: Trace) -> None:
    for post in trace.posts:
        before = post.before
        if RUNG[post.kind] in ("unlock", "force_unlock"):
            assert before.holder is not None, f"{post.kind} of an unlocked workspace"
            first = trace.first_seen[post.cycle][(before.workspace_id, before.holder[1])]
            _, stale_after = case.rule_of(before.tags)
            assert post.at - first > timedelta(seconds=stale_after), post
        else:
            assert before.run_status is not None and before.run_entered is not None, post
            assert post.at - before.run_entered > _run_threshold(case, before.run_status), post


def no_action_on_a_protected_workspace_or_lock_reason(case: Case, trace: Trace) -> None:
    for post in trace.posts:
        before = post.before
        assert not case.protected(before.name, before.tags, before.reason), post


def no_action_for_a_rung_the_matching_rule_does_not_list(case: Case, trace: Trace) -> None:
    for post in trace.posts:
        allowed, _ = case.rule_of(post.before.tags)
        assert RUNG[post.kind] in allowed, post


def a_run_held_lock_is_never_unlocked(case: Case, trace: Trace) -> None:
    for post in trace.posts:
        if post.kind in ("unlock", "force-unlock"):
            assert post.before.holder is not None, post
            assert post.before.holder[0] in ("users", "teams"), post


def no_force_cancel_before_a_cancel_and_its_cool_off(case: Case, trace: Trace) -> None:
    for post in trace.posts:
        if post.kind == "force-cancel":
            before = post.before
            assert before.canceled_at is not None, post
            assert before.force_cancel_available_at is not None, post
            assert before.force_cancel_available_at <= post.at, post


def every_post_follows_a_fresh_read_in_the_same_cycle_that_still_justifies_it(
    case: Case, trace: Trace
) -> None:
    for post in trace.posts:
        index = trace.post_index(post)
        reads = [
            snap
            for cycle, at, snap in trace.rereads
            if cycle == post.cycle and at < index and snap.workspace_id == post.workspace_id
        ]
        assert reads, f"no re-read before {post}"
        fresh = reads[-1]
        observed = trace.observed[post.cycle][post.workspace_id]
        for what in ("holder", "run_id", "run_status"):
            assert getattr(fresh, what) == getattr(observed, what), (what, post)
            # And nothing moved between the re-read and the POST.
            assert getattr(post.before, what) == getattr(fresh, what), (what, post)


def posts_stay_within_the_budgets_per_cycle_and_per_hour_across_restarts(
    case: Case, trace: Trace
) -> None:
    for cycle in range(len(case.cycles)):
        attempted = [p for p in trace.posts if p.cycle == cycle]
        assert len(attempted) <= case.max_per_cycle
    # The hourly budget counts POSTs the server accepted (a refused one changed nothing).
    accepted = [p for p in trace.posts if 200 <= p.status < 300]
    for post in accepted:
        window = [p for p in accepted if post.at - HOUR <= p.at <= post.at]
        assert len(window) <= case.max_per_hour, [(p.at, p.kind) for p in window]


def no_action_on_a_workspace_whose_data_failed_to_parse_this_cycle(
    case: Case, trace: Trace
) -> None:
    for post in trace.posts:
        assert post.workspace_id not in trace.corrupted.get(post.cycle, set()), post
        assert post.workspace_id not in trace.corrupted_reread.get(post.cycle, set()), post


INVARIANTS = (
    no_action_on_a_lock_or_run_younger_than_its_threshold,
    no_action_on_a_protected_workspace_or_lock_reason,
    no_action_for_a_rung_the_matching_rule_does_not_list,
    a_run_held_lock_is_never_unlocked,
    no_force_cancel_before_a_cancel_and_its_cool_off,
    every_post_follows_a_fresh_read_in_the_same_cycle_that_still_justifies_it,
    posts_stay_within_the_budgets_per_cycle_and_per_hour_across_restarts,
    no_action_on_a_workspace_whose_data_failed_to_parse_this_cycle,
)


@PROPERTY
@given(cases())
def test_every_post_of_a_random_world_keeps_every_safety_invariant(
    harness: Harness, case: Case
) -> None:
    """One simulation per example, judged by every invariant above (a failure names the
    invariant it broke): the evidence of one property per invariant at an eighth of the
    simulations."""
    trace = _run(case, harness)
    for invariant in INVARIANTS:
        invariant(case, trace)


# --- the harness is not vacuous -------------------------------------------------------------


def _enforcing(**overrides: Any) -> Case:
    """A stale user lock and a stuck apply that ignores a cancel, seen three times."""
    workspaces = (
        WorkspaceSpec("dev-0", (), ("alice", "Locked by Terraform"), None),
        WorkspaceSpec("dev-1", (), None, RunSpec("applying", 9 * 3600, True, None)),
    )
    return enforcing_case(workspaces, (0, 600, 600), **overrides)


def _kinds(posts: list[Post]) -> list[str]:
    return [post.kind for post in posts]


def test_the_harness_sees_the_ladder_act_when_the_world_allows_it(tmp_path: Path) -> None:
    trace = run_case(_enforcing(), tmp_path)
    assert _kinds(trace.posts) == ["cancel", "force-cancel", "force-unlock"]
    assert all(200 <= post.status < 300 for post in trace.posts)


def test_the_harness_sees_a_change_between_observe_and_act_stop_the_action(
    tmp_path: Path,
) -> None:
    case = _enforcing(
        cycles=(
            CycleSpec(0, False, ("none", "none"), frozenset(), frozenset()),
            CycleSpec(600, True, ("holder", "run_finishes"), frozenset(), frozenset()),
        )
    )
    trace = run_case(case, tmp_path)
    # Cycle 0 cancels the run; in cycle 1 the lock changes holder just before the act.
    assert _kinds(trace.posts) == ["cancel"]
