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

from tests.support.builders import (
    ALICE,
    EVERY_RUNG,
    NOW,
    PLATFORM,
    H,
    M,
    policy,
    run,
    run_holder,
    seen,
)
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
        holder = run_holder(current_run)
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


def run_held(current_run: Run, **kw: Any) -> Workspace:
    """A workspace locked by its current run, as TFC locks it for the run's duration."""
    return workspace(current_run=current_run, run_lock=True, **kw)


def unstamped(status: str, created_ago: timedelta, **kw: Any) -> Run:
    """A run in `status` whose `status-timestamps` lack the key of that status."""
    return Run(id="run-1", status=status, created_at=NOW - created_ago, actions=RunActions(**kw))


TAGS_MISSING = (("tag-names", "tag-names missing"),)
REASON_MISSING = (("locked-reason", "locked-reason missing"),)


def every_rung(**config: Any) -> dict[str, Any]:
    """Every rung allowed by the defaults, with `config`'s other sections (protect, rules)."""
    return {"defaults": {"actions": EVERY_RUNG}, **config}


@dataclass
class Case:
    ws: Workspace
    expect: ActionKind | None
    # A substring of the one restraint expected; None = no restraint at all.
    restraint: str | None = None
    config: dict[str, Any] = field(default_factory=every_rung)
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


def sandbox(**fields: Any) -> dict[str, Any]:
    """The rule `sandbox` for workspaces named `sandbox-*` (unless `match` is given)."""
    return {"id": "sandbox", "match": {"workspaces": ["sandbox-*"]}, **fields}


# A last rule that keeps every other workspace report-only.
EVERYTHING = {"id": "everything", "actions": []}


CASES = {
    # --- cancel ---------------------------------------------------------------------------
    "cancel-stuck-apply": Case(
        run_held(run("applying", 7 * H, cancelable=True)),
        ActionKind.CANCEL,
    ),
    "cancel-stuck-plan": Case(
        run_held(run("planning", 3 * H, cancelable=True)),
        ActionKind.CANCEL,
    ),
    "cancel-not-yet-past-threshold": Case(run_held(run("applying", 5 * H, cancelable=True)), None),
    "cancel-exactly-at-threshold-is-not-past": Case(
        run_held(run("applying", 6 * H, cancelable=True)), None
    ),
    "cancel-not-cancelable": Case(
        run_held(run("applying", 7 * H)),
        None,
        "is not cancelable",
    ),
    "cancel-unknown-status-uses-other-threshold": Case(
        run_held(run("teleporting", 3 * H, cancelable=True)),
        ActionKind.CANCEL,
    ),
    "cancel-unknown-status-young": Case(
        run_held(run("teleporting", 90 * M, cancelable=True)), None
    ),
    "cancel-per-rule-phase-threshold": Case(
        run_held(run("applying", 2 * H, cancelable=True)),
        ActionKind.CANCEL,
        config=only("cancel", run_stuck_after={"applying": "1h"}),
    ),
    # --- force_cancel ---------------------------------------------------------------------
    "force-cancel-never-before-cancel": Case(
        run_held(
            run("applying", 7 * H, cancelable=True, force_cancelable=True, force_cancel_in=-H)
        ),
        ActionKind.CANCEL,
    ),
    "force-cancel-after-cool-off": Case(
        run_held(run("applying", 7 * H, force_cancelable=True, canceled_ago=H, force_cancel_in=-M)),
        ActionKind.FORCE_CANCEL,
    ),
    "force-cancel-at-exactly-available-at": Case(
        run_held(
            run("applying", 7 * H, force_cancelable=True, canceled_ago=H, force_cancel_in=0 * M)
        ),
        ActionKind.FORCE_CANCEL,
    ),
    "force-cancel-before-available-at": Case(
        run_held(run("applying", 7 * H, force_cancelable=True, canceled_ago=M, force_cancel_in=M)),
        None,
        "force-cancel cool-off until",
    ),
    "force-cancel-no-available-at-yet": Case(
        run_held(run("applying", 7 * H, force_cancelable=True, canceled_ago=M)),
        None,
        "no force-cancel-available-at",
    ),
    "force-cancel-not-force-cancelable": Case(
        run_held(run("applying", 7 * H, canceled_ago=H, force_cancel_in=-M)),
        None,
        "is not force-cancelable",
    ),
    "force-cancel-not-after-a-fresh-human-cancel": Case(
        run_held(run("applying", H, force_cancelable=True, canceled_ago=H, force_cancel_in=-M)),
        None,
    ),
    "force-cancel-not-in-rule": Case(
        run_held(run("applying", 7 * H, force_cancelable=True, canceled_ago=H, force_cancel_in=-M)),
        None,
        "force_cancel not allowed by rule defaults",
        config=only("cancel"),
    ),
    # --- discard --------------------------------------------------------------------------
    "discard-waiting-past-threshold": Case(
        run_held(run("planned", 25 * H, discardable=True)),
        ActionKind.DISCARD,
    ),
    "discard-policy-checked": Case(
        run_held(run("policy_checked", 2 * 24 * H, discardable=True)),
        ActionKind.DISCARD,
    ),
    "discard-not-yet-past-waiting": Case(run_held(run("planned", 23 * H, discardable=True)), None),
    "discard-not-discardable": Case(
        run_held(run("planned", 25 * H)),
        None,
        "is not discardable",
    ),
    "waiting-run-is-never-cancelled": Case(
        run_held(run("planned", 25 * H, cancelable=True)),
        None,
        "would discard",
    ),
    "discard-not-in-rule": Case(
        run_held(run("planned", 25 * H, discardable=True)),
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
        run_held(run("applied", 30 * H)), None, seen=(30 * H, 50)
    ),
    "run-held-lock-stuck-not-cancelable-is-not-unlocked": Case(
        run_held(run("applying", 30 * H)),
        None,
        "would cancel",
        seen=(30 * H, 50),
    ),
    "run-held-lock-with-only-unlock-rungs": Case(
        run_held(run("applying", 30 * H, cancelable=True)),
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
        config=every_rung(protect={"workspaces": ["prod-*"]}),
    ),
    "protected-workspace-by-tag": Case(
        **stale_lock(tags=("team:x", "critical")),
        expect=None,
        restraint="protected: workspace has protected tag 'critical'",
        config=every_rung(protect={"tags": ["critical"]}),
    ),
    "protected-workspace-stuck-run": Case(
        run_held(run("applying", 7 * H, cancelable=True), name="prod-db"),
        None,
        "protected: workspace matches",
        config=every_rung(protect={"workspaces": ["prod-*"]}),
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
        config=every_rung(protect={"lock_reasons": [r"CHG-\d+"]}),
    ),
    "protected-young-lock-says-protected": Case(
        workspace(holder=ALICE, reason="do not unlock"), None, "protected", seen=(M, 2)
    ),
    # --- uncertain data -------------------------------------------------------------------
    "tags-missing-where-a-tag-protects": Case(
        **stale_lock(problems=TAGS_MISSING),
        expect=None,
        restraint="tag-names missing: protection and rules cannot be checked, no actions",
        config=every_rung(protect={"tags": ["protected"]}),
    ),
    "tags-missing-where-a-rule-matches-tags": Case(
        **stale_lock(problems=TAGS_MISSING),
        expect=None,
        restraint="tag-names missing",
        config=every_rung(rules=[{"id": "frozen", "match": {"tags": ["frozen"]}, "actions": []}]),
    ),
    "tags-missing-where-nothing-reads-tags": Case(
        **stale_lock(problems=TAGS_MISSING), expect=ActionKind.FORCE_UNLOCK
    ),
    "tags-missing-stops-the-run-rungs-too": Case(
        run_held(run("applying", 7 * H, cancelable=True), problems=TAGS_MISSING),
        None,
        "tag-names missing",
        config=every_rung(protect={"tags": ["protected"]}),
    ),
    "project-missing-where-a-rule-matches-projects": Case(
        **stale_lock(problems=(("project", "project prj-1 name not included"),)),
        expect=None,
        restraint="project prj-1 name not included",
        config=every_rung(rules=[{"id": "core", "match": {"projects": ["core"]}, "actions": []}]),
    ),
    "reason-missing-where-lock-reasons-protect": Case(
        **stale_lock(problems=REASON_MISSING), expect=None, restraint="locked-reason missing"
    ),
    "reason-missing-without-lock-reasons": Case(
        **stale_lock(problems=REASON_MISSING),
        expect=ActionKind.FORCE_UNLOCK,
        config=every_rung(protect={"lock_reasons": []}),
    ),
    "permissions-missing": Case(
        **stale_lock(problems=(("permissions", "permissions missing, not an object"),)),
        expect=None,
        restraint="permissions missing",
        config=every_rung(protect={"lock_reasons": []}),
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
        run_held(unstamped("policy_checking", 3 * H, is_cancelable=True)),
        None,
        "age unknown (no policy-checking-at timestamp)",
    ),
    "run-status-without-its-timestamp-report-only": Case(
        run_held(unstamped("policy_checking", 3 * H, is_cancelable=True)),
        None,
        "no actions on this workspace",
        config={},
    ),
    "pending-is-aged-from-created-at": Case(
        run_held(unstamped("pending", 3 * H, is_cancelable=True)),
        ActionKind.CANCEL,
    ),
    "unreadable-workspace": Case(
        **stale_lock(), expect=None, restraint="unreadable", unreadable=True
    ),
    "incomplete-observation-stale-lock": Case(
        **stale_lock(), expect=None, restraint="incomplete", complete=False
    ),
    "incomplete-observation-stuck-run": Case(
        run_held(run("applying", 7 * H, cancelable=True)),
        None,
        "incomplete",
        complete=False,
    ),
    # --- rule resolution ------------------------------------------------------------------
    "first-matching-rule-wins": Case(
        workspace(name="sandbox-1", holder=ALICE),
        ActionKind.FORCE_UNLOCK,
        seen=(45 * M, 2),
        config={"rules": [sandbox(lock_stale_after="30m", actions=["force_unlock"]), EVERYTHING]},
        rule="sandbox",
    ),
    "second-rule-when-the-first-does-not-match": Case(
        workspace(name="app", holder=ALICE),
        None,
        "force_unlock not allowed by rule everything",
        seen=(3 * H, 2),
        config={"rules": [sandbox(actions=["force_unlock"]), EVERYTHING]},
    ),
    "no-match-falls-back-to-defaults": Case(
        workspace(name="app", holder=ALICE),
        None,
        "young lock",
        seen=(45 * M, 2),
        config={**only("force_unlock"), "rules": [sandbox(lock_stale_after="30m")]},
    ),
    "rule-without-threshold-uses-the-default-threshold": Case(
        workspace(name="sandbox-1", holder=ALICE),
        None,
        "young lock",
        seen=(45 * M, 2),
        config={
            "defaults": {"lock_stale_after": "1h"},
            "rules": [sandbox(actions=["force_unlock"])],
        },
    ),
    "rule-without-actions-uses-the-default-actions": Case(
        workspace(name="sandbox-1", holder=ALICE, tags=("sandbox",)),
        ActionKind.FORCE_UNLOCK,
        seen=(45 * M, 2),
        config={
            **only("force_unlock"),
            "rules": [sandbox(match={"tags": ["sandbox"]}, lock_stale_after="30m")],
        },
    ),
    "report-only-defaults-never-act": Case(
        **stale_lock(), expect=None, restraint="not allowed", config={}
    ),
}


def _memory_for(case: Case) -> Memory:
    memory = Memory()
    if case.seen is not None and case.ws.holder is not None:
        observation = Observation(Source.TFC, "acme", NOW, workspaces=(case.ws,))
        seen(memory, [observation], *case.seen)
    return memory


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_ladder(case: Case) -> None:
    config = policy(**case.config)
    memory = _memory_for(case)
    observation = Observation(
        Source.TFC,
        "acme",
        NOW,
        workspaces=(case.ws,),
        complete=case.complete,
        unreadable=frozenset({case.ws.id}) if case.unreadable else frozenset(),
    )

    decision = decide([observation], config, memory, NOW, identity=case.identity)

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
            policy=config,
            memory=memory,
            now=NOW,
            identity=case.identity,
        )
        assert fresh == (decision.planned[0] if decision.planned else None)


def test_a_run_held_lock_is_never_planned_for_unlock_whatever_its_age() -> None:
    config = policy(**only("unlock", "force_unlock"))
    for status in ("applied", "applying", "planned", "pending", "teleporting", "errored"):
        ws = run_held(run(status, 300 * H, cancelable=True))
        case = Case(ws, None, seen=(300 * H, 100))
        memory = _memory_for(case)
        for identity in (None, ws.holder):
            action = plan_for_workspace(
                ws,
                organization_complete=True,
                policy=config,
                memory=memory,
                now=NOW,
                identity=identity,
            )
            assert action is None or action.kind not in (ActionKind.UNLOCK, ActionKind.FORCE_UNLOCK)
