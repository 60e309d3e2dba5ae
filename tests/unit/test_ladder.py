"""The remediation ladder as a table: every rung and every guard, one workspace per case.

Each case is checked through `decide()` (planned action or restraint) and, where the read was
complete, through `plan_for_workspace()`, which act.py runs on its fresh re-read: both must
give the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from tests.support.builders import ALICE, EVERY_RUNG, NOW, PLATFORM, H, M, run
from watchdog.decide import decide, plan_for_workspace
from watchdog.memory import Memory
from watchdog.model import (
    ActionKind,
    Holder,
    HolderType,
    Observation,
    Run,
    RunActions,
    Source,
    Workspace,
)
from watchdog.policy import Policy


def workspace(
    *,
    name: str = "app",
    holder: Holder | None = None,
    current_run: Run | None = None,
    tags: tuple[str, ...] = (),
    reason: str | None = None,
    run_lock: bool = False,
    locked: bool | None = None,
    problems: tuple[tuple[str, str], ...] = (),
) -> Workspace:
    if run_lock:
        assert current_run is not None
        holder = Holder(HolderType.RUN, current_run.id, current_run.status)
    return Workspace(
        organization="acme",
        id=f"ws-{name}",
        name=name,
        tags=tags,
        locked=holder is not None if locked is None else locked,
        locked_reason=reason,
        holder=holder,
        current_run=current_run,
        problems=problems,
    )


def unstamped(status: str, created_ago: timedelta, **kw: Any) -> Run:
    """A run in `status` whose `status-timestamps` lack the key of that status."""
    return Run(id="run-1", status=status, created_at=NOW - created_ago, actions=RunActions(**kw))


TAGS_MISSING = (("tag-names", "tag-names missing"),)
REASON_MISSING = (("locked-reason", "locked-reason missing"),)


@dataclass
class Case:
    ws: Workspace
    expect: ActionKind | None
    # A substring of the one restraint expected; None = no restraint at all.
    restraint: str | None = None
    config: dict[str, Any] = field(default_factory=lambda: {"defaults": {"actions": EVERY_RUNG}})
    # The lock was first seen this long before NOW and in this many cycles.
    seen: tuple[timedelta, int] | None = None
    identity: Holder | None = None
    complete: bool = True
    unreadable: bool = False
    rule: str | None = None


def stale_lock(**kw: Any) -> dict[str, Any]:
    """A user lock seen 3h ago in 3 cycles (defaults: stale after 2h)."""
    return {"ws": workspace(holder=kw.pop("holder", ALICE), **kw), "seen": (3 * H, 3)}


def only(*rungs: str, **defaults: Any) -> dict[str, Any]:
    return {"defaults": {"actions": list(rungs), **defaults}}


CASES = {
    # --- cancel ---------------------------------------------------------------------------
    "cancel-stuck-apply": Case(
        workspace(current_run=run("applying", 7 * H, cancelable=True), run_lock=True),
        ActionKind.CANCEL,
    ),
    "cancel-stuck-plan": Case(
        workspace(current_run=run("planning", 3 * H, cancelable=True), run_lock=True),
        ActionKind.CANCEL,
    ),
    "cancel-not-yet-past-threshold": Case(
        workspace(current_run=run("applying", 5 * H, cancelable=True), run_lock=True), None
    ),
    "cancel-exactly-at-threshold-is-not-past": Case(
        workspace(current_run=run("applying", 6 * H, cancelable=True), run_lock=True), None
    ),
    "cancel-not-cancelable": Case(
        workspace(current_run=run("applying", 7 * H), run_lock=True),
        None,
        "is not cancelable",
    ),
    "cancel-unknown-status-uses-other-threshold": Case(
        workspace(current_run=run("teleporting", 3 * H, cancelable=True), run_lock=True),
        ActionKind.CANCEL,
    ),
    "cancel-unknown-status-young": Case(
        workspace(current_run=run("teleporting", 90 * M, cancelable=True), run_lock=True), None
    ),
    "cancel-per-rule-phase-threshold": Case(
        workspace(current_run=run("applying", 2 * H, cancelable=True), run_lock=True),
        ActionKind.CANCEL,
        config=only("cancel", run_stuck_after={"applying": "1h"}),
    ),
    # --- force_cancel ---------------------------------------------------------------------
    "force-cancel-never-before-cancel": Case(
        workspace(
            current_run=run(
                "applying", 7 * H, cancelable=True, force_cancelable=True, force_cancel_in=-H
            ),
            run_lock=True,
        ),
        ActionKind.CANCEL,
    ),
    "force-cancel-after-cool-off": Case(
        workspace(
            current_run=run(
                "applying", 7 * H, force_cancelable=True, canceled_ago=H, force_cancel_in=-M
            ),
            run_lock=True,
        ),
        ActionKind.FORCE_CANCEL,
    ),
    "force-cancel-at-exactly-available-at": Case(
        workspace(
            current_run=run(
                "applying", 7 * H, force_cancelable=True, canceled_ago=H, force_cancel_in=0 * M
            ),
            run_lock=True,
        ),
        ActionKind.FORCE_CANCEL,
    ),
    "force-cancel-before-available-at": Case(
        workspace(
            current_run=run(
                "applying", 7 * H, force_cancelable=True, canceled_ago=M, force_cancel_in=M
            ),
            run_lock=True,
        ),
        None,
        "force-cancel cool-off until",
    ),
    "force-cancel-no-available-at-yet": Case(
        workspace(
            current_run=run("applying", 7 * H, force_cancelable=True, canceled_ago=M),
            run_lock=True,
        ),
        None,
        "no force-cancel-available-at",
    ),
    "force-cancel-not-force-cancelable": Case(
        workspace(
            current_run=run("applying", 7 * H, canceled_ago=H, force_cancel_in=-M),
            run_lock=True,
        ),
        None,
        "is not force-cancelable",
    ),
    "force-cancel-not-after-a-fresh-human-cancel": Case(
        workspace(
            current_run=run(
                "applying", H, force_cancelable=True, canceled_ago=H, force_cancel_in=-M
            ),
            run_lock=True,
        ),
        None,
    ),
    "force-cancel-not-in-rule": Case(
        workspace(
            current_run=run(
                "applying", 7 * H, force_cancelable=True, canceled_ago=H, force_cancel_in=-M
            ),
            run_lock=True,
        ),
        None,
        "force_cancel not allowed by rule defaults",
        config=only("cancel"),
    ),
    # --- discard --------------------------------------------------------------------------
    "discard-waiting-past-threshold": Case(
        workspace(current_run=run("planned", 25 * H, discardable=True), run_lock=True),
        ActionKind.DISCARD,
    ),
    "discard-policy-checked": Case(
        workspace(current_run=run("policy_checked", 2 * 24 * H, discardable=True), run_lock=True),
        ActionKind.DISCARD,
    ),
    "discard-not-yet-past-waiting": Case(
        workspace(current_run=run("planned", 23 * H, discardable=True), run_lock=True), None
    ),
    "discard-not-discardable": Case(
        workspace(current_run=run("planned", 25 * H), run_lock=True),
        None,
        "is not discardable",
    ),
    "waiting-run-is-never-cancelled": Case(
        workspace(current_run=run("planned", 25 * H, cancelable=True), run_lock=True),
        None,
        "would discard",
    ),
    "discard-not-in-rule": Case(
        workspace(current_run=run("planned", 25 * H, discardable=True), run_lock=True),
        None,
        "discard not allowed by rule defaults",
        config=only("cancel", "force_unlock"),
    ),
    # --- unlock / force_unlock ------------------------------------------------------------
    "force-unlock-stale-user-lock": Case(**stale_lock(), expect=ActionKind.FORCE_UNLOCK),
    "force-unlock-stale-team-lock": Case(
        **stale_lock(holder=PLATFORM), expect=ActionKind.FORCE_UNLOCK
    ),
    "force-unlock-with-final-current-run": Case(
        **stale_lock(current_run=run("applied", 5 * H)), expect=ActionKind.FORCE_UNLOCK
    ),
    "force-unlock-terraform-cli-reason-is-not-protected": Case(
        **stale_lock(reason="Locked by Terraform"), expect=ActionKind.FORCE_UNLOCK
    ),
    "unlock-when-the-watchdog-holds-the-lock": Case(
        **stale_lock(), expect=ActionKind.UNLOCK, identity=ALICE
    ),
    "force-unlock-when-someone-else-holds-it": Case(
        **stale_lock(),
        expect=ActionKind.FORCE_UNLOCK,
        identity=Holder(HolderType.USER, "user-watchdog"),
    ),
    "unlock-not-in-rule-does-not-become-force-unlock": Case(
        **stale_lock(),
        expect=None,
        restraint="unlock not allowed by rule defaults",
        identity=ALICE,
        config=only("force_unlock"),
    ),
    "force-unlock-not-in-rule": Case(
        **stale_lock(),
        expect=None,
        restraint="force_unlock not allowed by rule defaults",
        config=only("cancel", "unlock"),
    ),
    "young-lock": Case(workspace(holder=ALICE), None, "young lock", seen=(90 * M, 5)),
    "young-lock-never-seen-before": Case(workspace(holder=ALICE), None, "young lock"),
    "young-lock-quiet-where-the-rule-would-never-act": Case(
        workspace(holder=ALICE), None, None, seen=(90 * M, 5), config=only()
    ),
    "one-sighting-only": Case(
        workspace(holder=ALICE), None, "in 1 cycle(s), 2 needed", seen=(3 * H, 1)
    ),
    "user-lock-with-active-current-run": Case(
        **stale_lock(current_run=run("planning", 10 * M)),
        expect=None,
        restraint="current run run-1 is planning, not final",
    ),
    # A pending run waits for the lock and touches no state: it is what the lock blocks.
    "user-lock-with-a-pending-run-queued-behind-it-is-unlocked": Case(
        **stale_lock(current_run=run("pending", 10 * M)),
        expect=ActionKind.FORCE_UNLOCK,
    ),
    "pending-run-blocked-by-a-stale-user-lock-is-not-cancelled": Case(
        **stale_lock(current_run=run("pending", 3 * H, cancelable=True)),
        expect=ActionKind.FORCE_UNLOCK,
    ),
    "stale-user-lock-with-stuck-active-run-cancels-the-run-first": Case(
        **stale_lock(current_run=run("planning", 3 * H, cancelable=True)),
        expect=ActionKind.CANCEL,
    ),
    # --- run-held locks are never unlocked ------------------------------------------------
    "run-held-lock-with-final-run-is-left-alone": Case(
        workspace(current_run=run("applied", 30 * H), run_lock=True), None, seen=(30 * H, 50)
    ),
    "run-held-lock-stuck-not-cancelable-is-not-unlocked": Case(
        workspace(current_run=run("applying", 30 * H), run_lock=True),
        None,
        "would cancel",
        seen=(30 * H, 50),
    ),
    "run-held-lock-with-only-unlock-rungs": Case(
        workspace(current_run=run("applying", 30 * H, cancelable=True), run_lock=True),
        None,
        "cancel not allowed by rule defaults",
        seen=(30 * H, 50),
        config=only("unlock", "force_unlock"),
    ),
    "lock-held-by-another-run-than-the-current-one": Case(
        workspace(holder=Holder(HolderType.RUN, "run-other"), current_run=run("applied", 30 * H)),
        None,
        seen=(30 * H, 50),
    ),
    "locked-without-holder-information": Case(workspace(locked=True), None),
    # --- protection -----------------------------------------------------------------------
    "protected-workspace-by-glob": Case(
        **stale_lock(name="prod-db"),
        expect=None,
        restraint="protected: workspace matches protect.workspaces 'prod-*'",
        config={"defaults": {"actions": EVERY_RUNG}, "protect": {"workspaces": ["prod-*"]}},
    ),
    "protected-workspace-by-tag": Case(
        **stale_lock(tags=("team:x", "critical")),
        expect=None,
        restraint="protected: workspace has protected tag 'critical'",
        config={"defaults": {"actions": EVERY_RUNG}, "protect": {"tags": ["critical"]}},
    ),
    "protected-workspace-stuck-run": Case(
        workspace(
            name="prod-db", current_run=run("applying", 7 * H, cancelable=True), run_lock=True
        ),
        None,
        "protected: workspace matches",
        config={"defaults": {"actions": EVERY_RUNG}, "protect": {"workspaces": ["prod-*"]}},
    ),
    "protected-reason-default-pattern": Case(
        **stale_lock(reason="DB Maintenance until Friday"),
        expect=None,
        restraint="protected: lock reason",
    ),
    "protected-reason-custom-regex": Case(
        **stale_lock(reason="migration CHG-1234 running"),
        expect=None,
        restraint="matches protect.lock_reasons 'CHG-\\\\d+'",
        config={"defaults": {"actions": EVERY_RUNG}, "protect": {"lock_reasons": [r"CHG-\d+"]}},
    ),
    "protected-young-lock-says-protected": Case(
        workspace(holder=ALICE, reason="do not unlock"), None, "protected", seen=(M, 2)
    ),
    # --- uncertain data -------------------------------------------------------------------
    "tags-missing-where-a-tag-protects": Case(
        **stale_lock(problems=TAGS_MISSING),
        expect=None,
        restraint="tag-names missing: protection and rules cannot be checked, no actions",
        config={"defaults": {"actions": EVERY_RUNG}, "protect": {"tags": ["protected"]}},
    ),
    "tags-missing-where-a-rule-matches-tags": Case(
        **stale_lock(problems=TAGS_MISSING),
        expect=None,
        restraint="tag-names missing",
        config={
            "defaults": {"actions": EVERY_RUNG},
            "rules": [{"id": "frozen", "match": {"tags": ["frozen"]}, "actions": []}],
        },
    ),
    "tags-missing-where-nothing-reads-tags": Case(
        **stale_lock(problems=TAGS_MISSING), expect=ActionKind.FORCE_UNLOCK
    ),
    "tags-missing-stops-the-run-rungs-too": Case(
        workspace(
            current_run=run("applying", 7 * H, cancelable=True),
            run_lock=True,
            problems=TAGS_MISSING,
        ),
        None,
        "tag-names missing",
        config={"defaults": {"actions": EVERY_RUNG}, "protect": {"tags": ["protected"]}},
    ),
    "project-missing-where-a-rule-matches-projects": Case(
        **stale_lock(problems=(("project", "project prj-1 name not included"),)),
        expect=None,
        restraint="project prj-1 name not included",
        config={
            "defaults": {"actions": EVERY_RUNG},
            "rules": [{"id": "core", "match": {"projects": ["core"]}, "actions": []}],
        },
    ),
    "reason-missing-where-lock-reasons-protect": Case(
        **stale_lock(problems=REASON_MISSING), expect=None, restraint="locked-reason missing"
    ),
    "reason-missing-without-lock-reasons": Case(
        **stale_lock(problems=REASON_MISSING),
        expect=ActionKind.FORCE_UNLOCK,
        config={"defaults": {"actions": EVERY_RUNG}, "protect": {"lock_reasons": []}},
    ),
    "permissions-missing": Case(
        **stale_lock(problems=(("permissions", "permissions missing, not an object"),)),
        expect=None,
        restraint="permissions missing",
        config={"defaults": {"actions": EVERY_RUNG}, "protect": {"lock_reasons": []}},
    ),
    "locked-without-a-holder-no-run-rung-either": Case(
        workspace(
            current_run=run("applying", 7 * H, cancelable=True),
            locked=True,
            problems=(("locked-by", "locked, but locked-by names no holder"),),
        ),
        None,
        "locked-by names no holder",
    ),
    "run-status-without-its-timestamp-is-not-aged": Case(
        workspace(
            current_run=unstamped("policy_checking", 3 * H, is_cancelable=True), run_lock=True
        ),
        None,
        "age unknown (no policy-checking-at timestamp)",
    ),
    "run-status-without-its-timestamp-report-only": Case(
        workspace(
            current_run=unstamped("policy_checking", 3 * H, is_cancelable=True), run_lock=True
        ),
        None,
        "no actions on this workspace",
        config={},
    ),
    "pending-is-aged-from-created-at": Case(
        workspace(current_run=unstamped("pending", 3 * H, is_cancelable=True), run_lock=True),
        ActionKind.CANCEL,
    ),
    "unreadable-workspace": Case(
        **stale_lock(), expect=None, restraint="unreadable", unreadable=True
    ),
    "incomplete-observation-stale-lock": Case(
        **stale_lock(), expect=None, restraint="incomplete", complete=False
    ),
    "incomplete-observation-stuck-run": Case(
        workspace(current_run=run("applying", 7 * H, cancelable=True), run_lock=True),
        None,
        "incomplete",
        complete=False,
    ),
    # --- rule resolution ------------------------------------------------------------------
    "first-matching-rule-wins": Case(
        workspace(name="sandbox-1", holder=ALICE),
        ActionKind.FORCE_UNLOCK,
        seen=(45 * M, 2),
        config={
            "rules": [
                {
                    "id": "sandbox",
                    "match": {"workspaces": ["sandbox-*"]},
                    "lock_stale_after": "30m",
                    "actions": ["force_unlock"],
                },
                {"id": "everything", "actions": []},
            ]
        },
        rule="sandbox",
    ),
    "second-rule-when-the-first-does-not-match": Case(
        workspace(name="app", holder=ALICE),
        None,
        "force_unlock not allowed by rule everything",
        seen=(3 * H, 2),
        config={
            "rules": [
                {
                    "id": "sandbox",
                    "match": {"workspaces": ["sandbox-*"]},
                    "actions": ["force_unlock"],
                },
                {"id": "everything", "actions": []},
            ]
        },
    ),
    "no-match-falls-back-to-defaults": Case(
        workspace(name="app", holder=ALICE),
        None,
        "young lock",
        seen=(45 * M, 2),
        config={
            "defaults": {"actions": ["force_unlock"]},
            "rules": [
                {"id": "sandbox", "match": {"workspaces": ["sandbox-*"]}, "lock_stale_after": "30m"}
            ],
        },
    ),
    "rule-without-threshold-uses-the-default-threshold": Case(
        workspace(name="sandbox-1", holder=ALICE),
        None,
        "young lock",
        seen=(45 * M, 2),
        config={
            "defaults": {"lock_stale_after": "1h"},
            "rules": [
                {
                    "id": "sandbox",
                    "match": {"workspaces": ["sandbox-*"]},
                    "actions": ["force_unlock"],
                }
            ],
        },
    ),
    "rule-without-actions-uses-the-default-actions": Case(
        workspace(name="sandbox-1", holder=ALICE, tags=("sandbox",)),
        ActionKind.FORCE_UNLOCK,
        seen=(45 * M, 2),
        config={
            "defaults": {"actions": ["force_unlock"]},
            "rules": [{"id": "sandbox", "match": {"tags": ["sandbox"]}, "lock_stale_after": "30m"}],
        },
    ),
    "report-only-defaults-never-act": Case(
        **stale_lock(), expect=None, restraint="not allowed", config={}
    ),
}


def make_policy(config: dict[str, Any]) -> Policy:
    return Policy.model_validate({"tfc": {"organizations": ["acme"]}, **config})


def _memory_for(case: Case) -> Memory:
    memory = Memory()
    if case.seen is not None and case.ws.holder is not None:
        ago, sightings = case.seen
        observation = Observation(Source.TFC, "acme", NOW, workspaces=(case.ws,))
        memory.update([observation], NOW - ago)
        for _ in range(sightings - 1):
            memory.update([observation], NOW)
    return memory


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_ladder(case: Case) -> None:
    policy = make_policy(case.config)
    memory = _memory_for(case)
    observation = Observation(
        Source.TFC,
        "acme",
        NOW,
        workspaces=(case.ws,),
        complete=case.complete,
        unreadable=frozenset({case.ws.id}) if case.unreadable else frozenset(),
    )

    decision = decide([observation], policy, memory, NOW, identity=case.identity)

    assert [a.kind for a in decision.planned] == ([case.expect] if case.expect else [])
    reasons = [r.reason for r in decision.restraints]
    if case.restraint is None:
        assert reasons == []
    else:
        assert len(reasons) == 1, reasons
        assert case.restraint in reasons[0]
        assert decision.restraints[0].workspace_id == case.ws.id
    if case.expect is not None:
        action = decision.planned[0]
        assert action.workspace_id == case.ws.id
        if case.rule is not None:
            assert action.rule == case.rule
    if not case.unreadable:
        fresh = plan_for_workspace(
            case.ws,
            organization_complete=case.complete,
            policy=policy,
            memory=memory,
            now=NOW,
            identity=case.identity,
        )
        assert fresh == (decision.planned[0] if decision.planned else None)


def test_a_run_held_lock_is_never_planned_for_unlock_whatever_its_age() -> None:
    policy = make_policy({"defaults": {"actions": ["unlock", "force_unlock"]}})
    for status in ("applied", "applying", "planned", "pending", "teleporting", "errored"):
        ws = workspace(current_run=run(status, 300 * H, cancelable=True), run_lock=True)
        case = Case(ws, None, seen=(300 * H, 100))
        memory = _memory_for(case)
        for identity in (None, ws.holder):
            action = plan_for_workspace(
                ws,
                organization_complete=True,
                policy=policy,
                memory=memory,
                now=NOW,
                identity=identity,
            )
            assert action is None or action.kind not in (ActionKind.UNLOCK, ActionKind.FORCE_UNLOCK)
