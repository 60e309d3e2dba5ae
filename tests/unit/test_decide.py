"""decide(): lock states, findings and their reasons, planned-action fields and order."""

from __future__ import annotations

import inspect
import typing
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

import watchdog.decide
import watchdog.decide.backend
import watchdog.decide.tfc
from tests.support import builders
from tests.support.builders import ALICE, NOW, H, M, policy, run_holder, seen
from watchdog.decide import MemoryView, decide
from watchdog.memory import Memory
from watchdog.model import (
    ActionKind,
    FindingKind,
    Holder,
    Observation,
    Run,
    RunActions,
    Source,
    Workspace,
)
from watchdog.sources.tfc.parse import parse_workspace_page


def run(status: str, age: timedelta, run_id: str = "run-abc", **fields: Any) -> Run:
    """The shared builder; this file's runs are `run-abc` unless named."""
    return builders.run(status, age, run_id, **fields)


def run_locked(name: str, r: Run, org: str = "acme") -> Workspace:
    return Workspace(
        organization=org,
        id=f"ws-{org}-{name}",
        name=name,
        locked=True,
        holder=run_holder(r),
        current_run=r,
    )


def user_locked(name: str, holder: Holder = ALICE, org: str = "acme", **kw: Any) -> Workspace:
    return Workspace(
        organization=org, id=f"ws-{org}-{name}", name=name, locked=True, holder=holder, **kw
    )


def observe(*workspaces: Workspace, org: str = "acme", **kw: Any) -> Observation:
    return Observation(Source.TFC, org, NOW, workspaces=workspaces, **kw)


def test_a_run_held_lock_is_aged_from_its_status_timestamp() -> None:
    stuck = run("applying", 7 * H + 2 * M)
    ws = run_locked("network", stuck)
    decision = decide([observe(ws)], policy(), Memory(), NOW)

    (lock,) = decision.locks
    assert lock.holder == ws.holder
    assert lock.age_source == "run"
    assert lock.since == NOW - (7 * H + 2 * M)
    assert lock.age == 7 * H + 2 * M
    assert lock.stale is True
    assert lock.lock_id == "acme/network"
    assert lock.rule == "defaults"
    assert lock.run == stuck


def test_a_run_without_its_status_timestamp_has_an_unknown_age_and_gets_nothing() -> None:
    # Just entered policy_checking; the response has no policy-checking-at. Its created-at
    # (or an earlier status's time) says nothing about how long it has been checking policy.
    r = Run(
        id="run-abc",
        status="policy_checking",
        created_at=NOW - 3 * H,
        actions=RunActions(is_cancelable=True),
    )
    ws = run_locked("network", r)
    memory = Memory()
    seen(memory, [observe(ws)], 2 * M, 2)
    decision = decide([observe(ws)], policy(defaults={"actions": ["cancel"]}), memory, NOW)
    (lock,) = decision.locks
    assert lock.age_source == "first_seen"
    assert lock.since == NOW - 2 * M
    assert lock.stale is False
    assert not [f for f in decision.findings if f.kind is not FindingKind.LOCK_HELD]
    assert "run age unknown: no policy-checking-at timestamp" in decision.findings[0].reason
    assert decision.planned == ()
    (restraint,) = decision.restraints
    assert restraint.reason == (
        "run run-abc policy_checking, age unknown (no policy-checking-at timestamp): "
        "no actions on this workspace"
    )


def test_a_parsed_run_without_its_status_timestamp_is_not_cancelled() -> None:
    # Through the parser, as the API sends it: an older status's timestamp is present.
    doc = {
        "data": [
            {
                "id": "ws-1",
                "type": "workspaces",
                "attributes": {
                    "name": "network",
                    "locked": True,
                    "locked-reason": "",
                    "tag-names": [],
                    "permissions": {"can-force-unlock": True},
                },
                "relationships": {
                    "project": {"data": None},
                    "locked-by": {"data": {"type": "runs", "id": "run-abc"}},
                    "current-run": {"data": {"type": "runs", "id": "run-abc"}},
                },
            }
        ],
        "included": [
            {
                "id": "run-abc",
                "type": "runs",
                "attributes": {
                    "status": "policy_checking",
                    "created-at": stamp(NOW - 3 * H),
                    "status-timestamps": {"planning-at": stamp(NOW - 179 * M)},
                    "actions": {"is-cancelable": True},
                    "permissions": {"can-cancel": True},
                },
            }
        ],
    }
    workspaces, _, _ = parse_workspace_page(doc, "acme")
    decision = decide(
        [observe(*workspaces)], policy(defaults={"actions": ["cancel"]}), Memory(), NOW
    )
    assert decision.planned == ()
    assert all(f.kind is FindingKind.LOCK_HELD for f in decision.findings)


def stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def untagged_lock_page(tag_names: Any) -> dict[str, Any]:
    """A workspace locked by alice, with `tag-names` as given (`...` = left out)."""
    attributes: dict[str, Any] = {
        "name": "payments",
        "locked": True,
        "locked-reason": "",
        "permissions": {"can-force-unlock": True},
    }
    if tag_names is not ...:
        attributes["tag-names"] = tag_names
    return {
        "data": [
            {
                "id": "ws-pay",
                "type": "workspaces",
                "attributes": attributes,
                "relationships": {
                    "project": {"data": None},
                    "locked-by": {"data": {"type": "users", "id": "user-alice"}},
                },
            }
        ]
    }


@pytest.mark.parametrize("tag_names", [..., "protected", None, {"0": "protected"}])
def test_unreadable_tags_never_make_a_tag_protected_workspace_actionable(tag_names: Any) -> None:
    pol = policy(defaults={"actions": ["force_unlock"]}, protect={"tags": ["protected"]})
    workspaces, _, errors = parse_workspace_page(untagged_lock_page(tag_names), "acme")
    memory = Memory()
    seen(memory, [observe(*workspaces)], 3 * H, 3)
    decision = decide([observe(*workspaces)], pol, memory, NOW)
    assert decision.planned == ()
    assert errors == 1  # counted as a parse problem, yet still reported
    assert [lock.workspace for lock in decision.locks] == ["payments"]
    (restraint,) = decision.restraints
    assert "protection and rules cannot be checked" in restraint.reason
    # The same lock with its tags readable and without the protected tag is cleared.
    workspaces, _, errors = parse_workspace_page(untagged_lock_page(["web"]), "acme")
    assert errors == 0
    assert [a.kind for a in decide([observe(*workspaces)], pol, memory, NOW).planned] == [
        ActionKind.FORCE_UNLOCK
    ]


def test_a_user_lock_is_aged_from_first_sight() -> None:
    ws = user_locked("app", locked_reason="Locked by Terraform")
    memory = Memory()
    seen(memory, [observe(ws)], 3 * H, 2)
    (lock,) = decide([observe(ws)], policy(), memory, NOW).locks
    assert lock.age_source == "first_seen"
    assert lock.since == NOW - 3 * H
    assert lock.stale is True
    assert lock.reason == "Locked by Terraform"
    assert lock.run is None


def test_a_user_lock_not_yet_remembered_is_zero_old() -> None:
    (lock,) = decide([observe(user_locked("app"))], policy(), Memory(), NOW).locks
    assert lock.since == NOW
    assert lock.age == timedelta(0)
    assert lock.stale is False


def test_the_stuck_run_reason_reads_like_a_human_wrote_it() -> None:
    ws = run_locked("network", run("applying", 7 * H + 2 * M))
    findings = decide([observe(ws)], policy(), Memory(), NOW).findings
    (stuck,) = [f for f in findings if f.kind is FindingKind.RUN_STUCK]
    assert stuck.reason == "run run-abc applying for 7h02m, threshold 6h"
    assert stuck.run_id == "run-abc"
    assert stuck.run_status == "applying"
    assert stuck.threshold == 6 * H
    assert stuck.rule == "defaults"


def test_a_stale_run_lock_gives_held_stale_blocked_and_stuck() -> None:
    ws = run_locked("network", run("applying", 7 * H))
    findings = decide([observe(ws)], policy(), Memory(), NOW).findings
    assert [f.kind for f in findings] == [
        FindingKind.LOCK_HELD,
        FindingKind.LOCK_STALE,
        FindingKind.RUNS_BLOCKED,
        FindingKind.RUN_STUCK,
    ]
    blocked = findings[2]
    assert "run:run-abc" in blocked.reason
    assert "no run on this workspace can start until it is cleared" in blocked.reason


def test_a_pending_run_behind_a_stale_user_lock_is_named_as_blocked() -> None:
    ws = user_locked("app", current_run=run("pending", 20 * M))
    memory = Memory()
    seen(memory, [observe(ws)], 3 * H, 2)
    findings = decide([observe(ws)], policy(), memory, NOW).findings
    (blocked,) = [f for f in findings if f.kind is FindingKind.RUNS_BLOCKED]
    assert blocked.reason == "run run-abc is pending behind the stale lock of user:alice"


def test_a_young_lock_is_only_held() -> None:
    ws = run_locked("network", run("applying", 5 * H))
    findings = decide([observe(ws)], policy(), Memory(), NOW).findings
    assert [f.kind for f in findings] == [FindingKind.LOCK_HELD]
    assert findings[0].reason == "locked by run run-abc (applying) for 5h00m"


def test_a_stale_user_lock_says_who_how_long_and_the_threshold() -> None:
    ws = user_locked("app")
    memory = Memory()
    seen(memory, [observe(ws)], 3 * H + 12 * M, 2)
    findings = decide([observe(ws)], policy(), memory, NOW).findings
    kinds = {f.kind: f for f in findings}
    assert set(kinds) == {FindingKind.LOCK_HELD, FindingKind.LOCK_STALE, FindingKind.RUNS_BLOCKED}
    assert kinds[FindingKind.LOCK_STALE].reason == "lock held by user:alice for 3h12m, threshold 2h"
    assert kinds[FindingKind.LOCK_STALE].holder == ALICE
    assert kinds[FindingKind.LOCK_STALE].threshold == 2 * H


def test_a_run_waiting_for_a_human_is_waiting_not_stuck() -> None:
    ws = run_locked("app", run("policy_checked", 2 * 24 * H))
    findings = decide([observe(ws)], policy(), Memory(), NOW).findings
    kinds = [f.kind for f in findings]
    assert FindingKind.RUN_WAITING in kinds
    assert FindingKind.RUN_STUCK not in kinds
    (waiting,) = [f for f in findings if f.kind is FindingKind.RUN_WAITING]
    assert waiting.reason == (
        "run run-abc policy_checked, waiting for a human for 2d00h, threshold 1d"
    )


def test_an_unknown_status_is_non_final_with_the_other_threshold() -> None:
    config = {"defaults": {"run_stuck_after": {"other": "30m", "applying": "6h"}}}
    ws = run_locked("app", run("teleporting", 45 * M))
    findings = decide([observe(ws)], policy(**config), Memory(), NOW).findings
    (stuck,) = [f for f in findings if f.kind is FindingKind.RUN_STUCK]
    assert stuck.reason == "run run-abc teleporting for 45m, threshold 30m"


def test_a_stuck_run_on_an_unlocked_workspace_is_still_found() -> None:
    ws = Workspace(
        organization="acme", id="ws-1", name="plan-only", current_run=run("planning", 3 * H)
    )
    decision = decide([observe(ws)], policy(), Memory(), NOW)
    assert decision.locks == ()
    assert [f.kind for f in decision.findings] == [FindingKind.RUN_STUCK]


def test_a_lock_without_holder_is_reported_but_has_no_lock_state() -> None:
    ws = Workspace(organization="acme", id="ws-1", name="mystery", locked=True)
    decision = decide([observe(ws)], policy(), Memory(), NOW)
    assert decision.locks == ()
    (finding,) = decision.findings
    assert finding.kind is FindingKind.LOCK_HELD
    assert "holder unknown" in finding.reason


def test_the_planned_action_carries_what_act_must_reverify() -> None:
    stuck = run("applying", 7 * H + 2 * M, actions=RunActions(is_cancelable=True))
    ws = run_locked("network", stuck)
    config = {"rules": [{"id": "net", "match": {"workspaces": ["net*"]}, "actions": ["cancel"]}]}
    (action,) = decide([observe(ws)], policy(**config), Memory(), NOW).planned
    assert action.kind is ActionKind.CANCEL
    assert action.source is Source.TFC
    assert (action.organization, action.workspace, action.workspace_id) == (
        "acme",
        "network",
        "ws-acme-network",
    )
    assert action.rule == "net"
    assert action.holder == ws.holder
    assert (action.run_id, action.run_status) == ("run-abc", "applying")
    assert action.since == NOW - (7 * H + 2 * M)
    assert action.age == 7 * H + 2 * M
    assert action.threshold == 6 * H
    assert action.comment == "tfc-watchdog: run run-abc applying for 7h02m, threshold 6h"


def test_at_most_one_action_per_workspace() -> None:
    # A stale user lock and a stuck cancelable run on the same workspace: the run goes first.
    stuck = run("planning", 3 * H, actions=RunActions(is_cancelable=True))
    ws = user_locked("app", current_run=stuck)
    memory = Memory()
    seen(memory, [observe(ws)], 5 * H, 3)
    config = {"defaults": {"actions": ["cancel", "force_unlock"]}}
    planned = decide([observe(ws)], policy(**config), memory, NOW).planned
    assert [a.kind for a in planned] == [ActionKind.CANCEL]


def test_planned_actions_are_oldest_first_then_by_organization_and_name() -> None:
    cancelable = RunActions(is_cancelable=True)
    b_old = run_locked("b", run("applying", 9 * H, "run-b", actions=cancelable))
    a_young = run_locked("a", run("applying", 7 * H, "run-a", actions=cancelable))
    c_tie = run_locked("c", run("applying", 7 * H, "run-c", actions=cancelable))
    beta_tie = run_locked("a", run("applying", 7 * H, "run-z", actions=cancelable), org="beta")
    config = {"defaults": {"actions": ["cancel"]}}
    decision = decide(
        [observe(beta_tie, org="beta"), observe(c_tie, b_old, a_young)],
        policy(**config),
        Memory(),
        NOW,
    )
    assert [a.run_id for a in decision.planned] == ["run-b", "run-a", "run-c", "run-z"]


def test_findings_and_locks_are_in_organization_and_workspace_order() -> None:
    decision = decide(
        [
            observe(user_locked("z", org="beta"), org="beta"),
            observe(user_locked("y"), user_locked("x")),
        ],
        policy(),
        Memory(),
        NOW,
    )
    assert [(lock.organization, lock.workspace) for lock in decision.locks] == [
        ("acme", "x"),
        ("acme", "y"),
        ("beta", "z"),
    ]
    assert [f.workspace for f in decision.findings] == ["x", "y", "z"]


def test_decide_reads_memory_without_changing_it() -> None:
    ws = user_locked("app")
    memory = Memory()
    seen(memory, [observe(ws)], 3 * H, 2)
    decide([observe(ws)], policy(defaults={"actions": ["force_unlock"]}), memory, NOW)
    assert memory.sightings(ws.id, ALICE.id) == 2
    assert memory.first_seen(ws.id, ALICE.id) == NOW - 3 * H


def test_every_memory_decide_takes_is_the_read_only_view() -> None:
    # MemoryView has no update() or save(): with every `memory` parameter typed so, mypy
    # (strict, in CI) rejects a decide that writes the memory or its state file.
    modules = (watchdog.decide, watchdog.decide.tfc, watchdog.decide.backend)
    typed = {
        f"{module.__name__}.{name}": typing.get_type_hints(function).get("memory")
        for module in modules
        for name, function in inspect.getmembers(module, inspect.isfunction)
        if function.__module__ == module.__name__
        and "memory" in inspect.signature(function).parameters
    }
    assert "watchdog.decide.tfc.plan_for_workspace" in typed
    assert "watchdog.decide.backend.plan_for_backend_lock" in typed
    assert {name: hint for name, hint in typed.items() if hint is not MemoryView} == {}
    assert not {"update", "save", "begin_action", "finish_action"} & set(dir(MemoryView))


def test_other_sources_are_left_to_their_own_deciders() -> None:
    other = Observation(Source.DYNAMODB, "tf-locks", NOW)
    decision = decide([other], policy(), Memory(), NOW)
    assert decision.locks == ()
    assert decision.findings == ()
    assert decision.planned == ()
    assert decision.restraints == ()


def test_an_incomplete_observation_still_reports_what_it_read() -> None:
    ws = run_locked("network", run("applying", 7 * H, actions=RunActions(is_cancelable=True)))
    config = {"defaults": {"actions": ["cancel"]}}
    decision = decide(
        [observe(ws, complete=False, error="page 2: timeout")], policy(**config), Memory(), NOW
    )
    assert decision.planned == ()
    assert len(decision.locks) == 1
    assert FindingKind.RUN_STUCK in [f.kind for f in decision.findings]
    assert "incomplete" in decision.restraints[0].reason


def test_restraint_reasons_do_not_change_while_nothing_but_time_does() -> None:
    # The daemon logs a restraint when its text is new: ages in it would log it every cycle.
    ws_young = user_locked("young")
    ws_stuck = run_locked("stuck", run("applying", 7 * H))
    memory = Memory()
    seen(memory, [observe(ws_young)], 10 * M, 2)
    config = policy(defaults={"actions": ["cancel", "force_unlock"]})
    first = decide([observe(ws_young, ws_stuck)], config, memory, NOW).restraints
    later = decide([observe(ws_young, ws_stuck)], config, memory, NOW + 30 * M).restraints
    assert [r.reason for r in first] == [r.reason for r in later]
    assert [r.reason for r in first] == [
        "run run-abc is not cancelable (actions.is-cancelable false)"
        " (would cancel run run-abc (applying))",
        "young lock: the lock of user:alice is not yet past lock_stale_after 2h",
    ]


# --- adaptive thresholds ------------------------------------------------------------------------

ADAPTIVE = {"applying": {"factor": 4, "min": "30m", "max": "12h"}}


def test_findings_and_the_planned_cancel_name_the_adaptive_thresholds_source() -> None:
    stuck = run("applying", 2 * H + 30 * M, actions=RunActions(is_cancelable=True))
    ws = replace(run_locked("network", stuck), apply_duration_average=30 * M)
    config = policy(rules=[{"id": "adaptive", "run_stuck_after": ADAPTIVE, "actions": ["cancel"]}])
    decision = decide([observe(ws)], config, Memory(), NOW)

    why = "run run-abc applying for 2h30m, threshold 2h (4 x apply average 30m)"
    (finding,) = [f for f in decision.findings if f.kind is FindingKind.RUN_STUCK]
    assert (finding.reason, finding.threshold) == (why, 2 * H)
    (stale,) = [f for f in decision.findings if f.kind is FindingKind.LOCK_STALE]
    assert stale.reason == f"lock held by a stuck run: {why}"
    (planned,) = decision.planned
    assert planned.kind is ActionKind.CANCEL
    assert planned.reason == why
    assert planned.threshold == 2 * H


def test_a_restraint_names_the_min_when_the_workspace_has_no_average() -> None:
    # Past `min` with no average: stuck by the rule's floor, but not cancelable yet.
    stuck = run("applying", 45 * M, actions=RunActions(is_cancelable=False))
    ws = run_locked("network", stuck)
    config = policy(rules=[{"id": "adaptive", "run_stuck_after": ADAPTIVE, "actions": ["cancel"]}])
    decision = decide([observe(ws)], config, Memory(), NOW)

    (finding,) = [f for f in decision.findings if f.kind is FindingKind.RUN_STUCK]
    assert finding.reason == "run run-abc applying for 45m, threshold 30m (min; no apply average)"
    assert decision.planned == ()
    (restraint,) = decision.restraints
    assert restraint.reason == (
        "run run-abc is not cancelable (actions.is-cancelable false) "
        "(would cancel run run-abc (applying), threshold 30m (min; no apply average))"
    )


def test_a_long_apply_average_keeps_a_run_the_fixed_default_would_call_stuck() -> None:
    # 7h applying is past the fixed 6h, but this workspace's applies average 3h: 12h.
    ws = replace(run_locked("network", run("applying", 7 * H)), apply_duration_average=3 * H)
    config = policy(rules=[{"id": "adaptive", "run_stuck_after": ADAPTIVE, "actions": ["cancel"]}])
    decision = decide([observe(ws)], config, Memory(), NOW)
    assert [f.kind for f in decision.findings] == [FindingKind.LOCK_HELD]
    assert decision.planned == ()
